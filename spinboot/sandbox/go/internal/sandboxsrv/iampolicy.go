package sandboxsrv

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/genproto/googleapis/type/expr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// emptyEtag is what Google returns for a resource whose policy was never set ("ACAB" in JSON).
var emptyEtag, _ = base64.StdEncoding.DecodeString("ACAB")

// ConcurrentChangeMsg is the real services' wording for an etag mismatch (gRPC ABORTED, HTTP 409).
const ConcurrentChangeMsg = "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff."

var (
	roleRE   = regexp.MustCompile(`^(roles/[A-Za-z0-9_.]+|(projects|organizations)/[^/]+/roles/[A-Za-z0-9_.]+)$`)
	memberRE = regexp.MustCompile(`^((user|group|serviceAccount|domain|deleted:user|deleted:group|deleted:serviceAccount|projectOwner|projectEditor|projectViewer):[^\s:]+(\?uid=\d+)?|allUsers|allAuthenticatedUsers|principal(Set)?://\S+)$`)
)

// PolicyStore keeps IAM policies per resource with Google's etag read-modify-write contract: every write gets a
// fresh etag, and a write carrying an etag other than the current one fails with ABORTED.
type PolicyStore struct {
	mu       sync.Mutex
	seq      uint64
	policies map[string]*iampb.Policy
	// RoleOK, if set, rejects roles a resource type does not support (INVALID_ARGUMENT, like the real APIs).
	RoleOK func(resource, role string) bool
	// MemberCheck, if set, returns an error for members that do not exist (e.g. a deleted service account).
	MemberCheck func(member string) error
}

func NewPolicyStore() *PolicyStore { return &PolicyStore{policies: map[string]*iampb.Policy{}} }

// Get returns the current policy (an empty one with the never-set etag if none was stored).
func (ps *PolicyStore) Get(resource string) *iampb.Policy {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p, ok := ps.policies[resource]; ok {
		return proto.Clone(p).(*iampb.Policy)
	}
	return &iampb.Policy{Version: 1, Etag: emptyEtag}
}

// Delete forgets a resource's policy, as deleting the resource does at Google.
func (ps *PolicyStore) Delete(resource string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	delete(ps.policies, resource)
}

// RenameMember replaces member old with new in every binding of every policy, giving each changed policy a new
// etag, and returns how many policies changed. A deleted service account stays in the policies that named it as
// "deleted:serviceAccount:EMAIL?uid=ID", granting nothing
// (https://cloud.google.com/iam/docs/policies#handle-deleted-principals).
func (ps *PolicyStore) RenameMember(old, new string) int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	changed := 0
	for _, p := range ps.policies {
		hit := false
		for _, b := range p.Bindings {
			for i, m := range b.Members {
				if m == old {
					b.Members[i], hit = new, true
				}
			}
			sort.Strings(b.Members)
		}
		if hit {
			ps.seq++
			etag := make([]byte, 9)
			etag[0] = 0x07
			binary.BigEndian.PutUint64(etag[1:], ps.seq)
			p.Etag = etag
			changed++
		}
	}
	return changed
}

// Set validates and stores a policy; mask paths follow SetIamPolicyRequest.update_mask (default: bindings, etag).
func (ps *PolicyStore) Set(resource string, in *iampb.Policy, maskPaths []string) (*iampb.Policy, error) {
	if in == nil {
		return nil, status.Error(codes.InvalidArgument, "policy is required")
	}
	bindings, err := ps.normalize(resource, in)
	if err != nil {
		return nil, err
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	cur, ok := ps.policies[resource]
	curEtag := emptyEtag
	if ok {
		curEtag = cur.Etag
	}
	if len(in.Etag) > 0 && !bytes.Equal(in.Etag, curEtag) {
		return nil, status.Error(codes.Aborted, ConcurrentChangeMsg)
	}
	next := &iampb.Policy{Version: 1}
	if ok {
		next = proto.Clone(cur).(*iampb.Policy)
	}
	if len(maskPaths) == 0 {
		maskPaths = []string{"bindings", "etag"}
	}
	for _, p := range maskPaths {
		switch p {
		case "bindings":
			next.Bindings = bindings
		case "audit_configs", "auditConfigs":
			next.AuditConfigs = in.AuditConfigs
		case "etag", "version":
		default:
			return nil, status.Errorf(codes.InvalidArgument, "invalid update_mask path %q", p)
		}
	}
	next.Version = 1
	for _, b := range next.Bindings {
		if b.Condition != nil {
			next.Version = 3
		}
	}
	ps.seq++
	etag := make([]byte, 9)
	etag[0] = 0x07 // real etags decode to bytes starting 0x07 ("BwY..." in base64)
	binary.BigEndian.PutUint64(etag[1:], ps.seq)
	next.Etag = etag
	ps.policies[resource] = next
	return proto.Clone(next).(*iampb.Policy), nil
}

// normalize validates roles and members and returns bindings merged per (role, condition), members
// de-duplicated and sorted, empty bindings dropped: the canonical form Google returns.
func (ps *PolicyStore) normalize(resource string, in *iampb.Policy) ([]*iampb.Binding, error) {
	if in.Version != 0 && in.Version != 1 && in.Version != 3 {
		return nil, status.Errorf(codes.InvalidArgument, "invalid policy version %d: must be 1 or 3", in.Version)
	}
	type key struct{ role, cond string }
	merged := map[key]map[string]bool{}
	conds := map[key]*expr.Expr{}
	for _, b := range in.Bindings {
		if !roleRE.MatchString(b.Role) {
			return nil, status.Errorf(codes.InvalidArgument, "Role (%s) does not exist in the resource's hierarchy.", b.Role)
		}
		if ps.RoleOK != nil && !ps.RoleOK(resource, b.Role) {
			return nil, status.Errorf(codes.InvalidArgument, "Role %s is not supported for this resource.", b.Role)
		}
		if b.Condition != nil && in.Version != 3 {
			return nil, status.Error(codes.InvalidArgument, "policies with conditions require version 3")
		}
		k := key{b.Role, ""}
		if b.Condition != nil {
			k.cond = b.Condition.Expression + "\x00" + b.Condition.Title
			conds[k] = b.Condition
		}
		if merged[k] == nil {
			merged[k] = map[string]bool{}
		}
		for _, m := range b.Members {
			if !memberRE.MatchString(m) {
				return nil, status.Errorf(codes.InvalidArgument, "Invalid member: %q (want user:, group:, serviceAccount:, domain:, allUsers, allAuthenticatedUsers, principal://...)", m)
			}
			if ps.MemberCheck != nil {
				if err := ps.MemberCheck(m); err != nil {
					return nil, err
				}
			}
			merged[k][m] = true
		}
	}
	var out []*iampb.Binding
	for k, ms := range merged {
		if len(ms) == 0 {
			continue
		}
		b := &iampb.Binding{Role: k.role, Condition: conds[k]}
		for m := range ms {
			b.Members = append(b.Members, m)
		}
		sort.Strings(b.Members)
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Role != out[j].Role {
			return out[i].Role < out[j].Role
		}
		return fmt.Sprint(out[i].Condition) < fmt.Sprint(out[j].Condition)
	})
	return out, nil
}

// GrantedPermissions answers TestIamPermissions for the sandbox's single, all-powerful caller: every
// requested permission that belongs to the resource's service (prefix) is granted.
func GrantedPermissions(perms []string, prefixes ...string) ([]string, error) {
	var out []string
	for _, p := range perms {
		if strings.ContainsAny(p, "*") {
			return nil, status.Errorf(codes.InvalidArgument, "Permission %s is not valid: wildcards are not allowed.", p)
		}
		for _, pre := range prefixes {
			if strings.HasPrefix(p, pre) {
				out = append(out, p)
				break
			}
		}
	}
	return out, nil
}
