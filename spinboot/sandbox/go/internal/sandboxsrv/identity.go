package sandboxsrv

// Identities other than the operator's, and Google IAM evaluated from the policies spinboot set.
//
// The sandbox has one operator identity (spinboot itself: no credentials, or the sandbox's admin token) that may
// do anything, as the project owner running spinboot on real GCP. Spinnaker's pods get a different identity:
// a Workload Identity token for a Google service account, minted by the GKE stand-in's metadata server only when
// the service account's policy grants roles/iam.workloadIdentityUser to the pod's Kubernetes service account.
// A call carrying such a token is allowed only if a policy on the resource grants the caller a role whose
// permissions (the role table, halconfig/iam-roles.yaml) hold the permission the call needs, as Google's IAM does.
//
// Token form: "sbx1." + base64url(email) + "." + hex(HMAC-SHA256(secret, "sbx1." + base64url(email))), where the
// secret is the sandbox's admin token (SPINBOOT_SANDBOX_TOKEN), so every stand-in can verify without shared state.

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/grpc/metadata"
)

// TokenPrefix marks a sandbox identity token.
const TokenPrefix = "sbx1."

// SecretEnv names the environment variable holding the HMAC secret (the sandbox's admin token).
const SecretEnv = "SPINBOOT_SANDBOX_TOKEN"

// MintToken returns a token asserting the Google service account email.
func MintToken(secret, email string) string {
	body := TokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(email))
	return body + "." + sign(secret, body)
}

func sign(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

// VerifyToken returns the email a token asserts, or ok=false for a token that is not a valid identity token.
func VerifyToken(secret, token string) (email string, ok bool) {
	if secret == "" || !strings.HasPrefix(token, TokenPrefix) {
		return "", false
	}
	i := strings.LastIndexByte(token, '.')
	if i <= len(TokenPrefix) {
		return "", false
	}
	body, mac := token[:i], token[i+1:]
	if !hmac.Equal([]byte(sign(secret, body)), []byte(mac)) {
		return "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(body[len(TokenPrefix):])
	if err != nil {
		return "", false
	}
	return string(raw), true
}

// Caller is who made a call: the operator (Member == "") or a service account ("serviceAccount:EMAIL").
type Caller struct {
	Member string
	// Invalid is set when the call carried a token that is neither the admin token nor a valid identity token.
	Invalid bool
}

// Operator reports whether the caller is the sandbox's operator (allowed everything).
func (c Caller) Operator() bool { return c.Member == "" && !c.Invalid }

// CallerFromBearer classifies an "Authorization" header value (or gRPC metadata value).
func CallerFromBearer(secret, header string) Caller {
	tok := strings.TrimSpace(header)
	if len(tok) >= 7 && strings.EqualFold(tok[:7], "bearer ") {
		tok = strings.TrimSpace(tok[7:])
	} else if tok != "" {
		return Caller{} // Basic or other schemes: not an identity token; the operator's clients send none
	}
	if tok == "" || tok == secret || !strings.HasPrefix(tok, TokenPrefix) {
		return Caller{}
	}
	if email, ok := VerifyToken(secret, tok); ok {
		return Caller{Member: "serviceAccount:" + email}
	}
	return Caller{Invalid: true}
}

// CallerFromContext reads the caller of a gRPC call from its "authorization" metadata.
func CallerFromContext(ctx context.Context, secret string) Caller {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		return CallerFromBearer(secret, v)
	}
	return Caller{}
}

// Roles maps a predefined role to the permissions it holds.
type Roles struct {
	perms map[string]map[string]bool
}

// LoadRoles reads the role table as JSON: {"roles": {"roles/x": {"permissions": ["a.b.c", ...]}}} (the sandbox
// converts halconfig/iam-roles.yaml to this form when it starts a server).
func LoadRoles(path string) (*Roles, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Roles map[string]struct {
			Permissions []string `json:"permissions"`
		} `json:"roles"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r := &Roles{perms: map[string]map[string]bool{}}
	for role, def := range doc.Roles {
		set := map[string]bool{}
		for _, p := range def.Permissions {
			set[p] = true
		}
		r.perms[role] = set
	}
	return r, nil
}

// LoadRolesFromEnv loads the role table named by $SPINBOOT_SANDBOX_IAM_ROLES, or returns nil (no enforcement
// possible: every identity call is refused, which is safer than allowing it).
func LoadRolesFromEnv() (*Roles, error) {
	p := os.Getenv("SPINBOOT_SANDBOX_IAM_ROLES")
	if p == "" {
		return nil, nil
	}
	return LoadRoles(p)
}

// Holds reports whether a role holds a permission.
func (r *Roles) Holds(role, permission string) bool {
	return r != nil && r.perms[role][permission]
}

// RolesWith lists the known roles that hold a permission (for error messages: what would have allowed it).
func (r *Roles) RolesWith(permission string) []string {
	var out []string
	if r == nil {
		return out
	}
	for role, set := range r.perms {
		if set[permission] {
			out = append(out, role)
		}
	}
	sort.Strings(out)
	return out
}

// Grant is a binding that gives a member a permission.
type Grant struct {
	Role     string
	Resource string
}

// Evaluate returns the first binding (over the policies, most specific resource first) that grants member the
// permission. Conditional bindings are not evaluated (the sandbox has no CEL): they grant nothing here, so a
// condition can only make the sandbox stricter than GCP, never more lenient.
func (r *Roles) Evaluate(member, permission string, policies map[string]*iampb.Policy, order []string) (Grant, bool) {
	for _, res := range order {
		p := policies[res]
		if p == nil {
			continue
		}
		for _, b := range p.Bindings {
			if b.Condition != nil || !r.Holds(b.Role, permission) {
				continue
			}
			for _, m := range b.Members {
				// allUsers and allAuthenticatedUsers include every service account, as at Google.
				if m == member || m == "allUsers" || m == "allAuthenticatedUsers" {
					return Grant{Role: b.Role, Resource: res}, true
				}
			}
		}
	}
	return Grant{}, false
}

// DeniedMessage is Google's wording for a missing permission (HTTP 403 / gRPC PERMISSION_DENIED), with the roles
// that would grant it appended so a failing sandbox run says what to grant.
func (r *Roles) DeniedMessage(member, permission, resource string) string {
	msg := fmt.Sprintf("%s does not have %s access to %s (Permission '%s' denied on resource).",
		strings.TrimPrefix(member, "serviceAccount:"), permission, resource, permission)
	if roles := r.RolesWith(permission); len(roles) > 0 {
		msg += " Roles that hold it: " + strings.Join(roles, ", ") + "."
	}
	return msg
}

// RolesEnv names the environment variable holding the path of the role table (JSON, see LoadRoles).
const RolesEnv = "SPINBOOT_SANDBOX_IAM_ROLES"

// Gate is what a stand-in needs to enforce IAM: the secret that verifies identity tokens and the role table.
type Gate struct {
	Secret string
	Roles  *Roles
}

// GateFromEnv reads $SPINBOOT_SANDBOX_TOKEN and $SPINBOOT_SANDBOX_IAM_ROLES. Without a secret no identity token
// verifies (every identity call is UNAUTHENTICATED); without a role table every identity call is denied.
func GateFromEnv() (*Gate, error) {
	roles, err := LoadRolesFromEnv()
	if err != nil {
		return nil, err
	}
	return &Gate{Secret: os.Getenv(SecretEnv), Roles: roles}, nil
}

// Allowed evaluates one permission on one resource against that resource's policy (nil: no policy, no grant).
func (g *Gate) Allowed(member, permission, resource string, policy *iampb.Policy) bool {
	_, ok := g.Roles.Evaluate(member, permission, map[string]*iampb.Policy{resource: policy}, []string{resource})
	return ok
}

// Granted answers TestIamPermissions for an identity: the subset of perms the policy grants member. (The operator
// gets every permission of the resource's service: GrantedPermissions.)
func (g *Gate) Granted(member string, perms []string, resource string, policy *iampb.Policy) []string {
	var out []string
	for _, p := range perms {
		if g.Allowed(member, p, resource, policy) {
			out = append(out, p)
		}
	}
	return out
}

// UnauthenticatedMessage is Google's wording for a bearer token it cannot verify (gRPC UNAUTHENTICATED, HTTP 401).
const UnauthenticatedMessage = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
