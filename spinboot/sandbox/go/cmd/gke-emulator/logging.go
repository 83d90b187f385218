package main

// google.logging.v2.LoggingServiceV2/ListLogEntries over the sandbox clusters' own API-server audit logs, so
// `spinboot drift --audit` reads Cloud Audit Logs through google-cloud-logging exactly as on GKE. Each write the
// audit log records (create, update, patch, delete; dry runs change nothing and are left out) becomes an Admin
// Activity entry shaped like GKE's (https://cloud.google.com/kubernetes-engine/docs/how-to/audit-logging):
// logName projects/P/logs/cloudaudit.googleapis.com%2Factivity, resource k8s_cluster {project_id, location,
// cluster_name}, protoPayload google.cloud.audit.AuditLog with serviceName k8s.io, methodName
// io.k8s.GROUP.VERSION.RESOURCE[.SUBRESOURCE].VERB and resourceName GROUP/VERSION/namespaces/NS/RESOURCE/NAME.
//
// The filter language is the documented one (https://cloud.google.com/logging/docs/view/logging-query-language)
// restricted to what spinboot sends: comparisons joined by AND, operators = != : >= > <= <, quoted values. Any
// other field or construct is INVALID_ARGUMENT, as a malformed filter is at Google, so a spinboot change that
// relies on more fails here rather than passing untested.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	"google.golang.org/genproto/googleapis/api/monitoredres"
	"google.golang.org/genproto/googleapis/cloud/audit"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"spinboot.dev/sandbox/internal/sandboxsrv"
)

type loggingSrv struct {
	loggingpb.UnimplementedLoggingServiceV2Server
	gke *container
}

func registerLogging(srv *sandboxsrv.Server, gke *container) {
	loggingpb.RegisterLoggingServiceV2Server(srv.GRPC, &loggingSrv{gke: gke})
}

// auditLogPath is where a sandbox control plane's API server writes its audit log: logs/audit.log in the
// cluster's directory, which also holds the admin kubeconfig (spinboot/sandbox/kube.py, KubeCluster).
func auditLogPath(kubeconfig string) string {
	return filepath.Join(filepath.Dir(kubeconfig), "logs", "audit.log")
}

// k8sAuditEvent is the part of an audit.k8s.io/v1 Event the entries are built from.
type k8sAuditEvent struct {
	Stage      string `json:"stage"`
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		APIGroup    string `json:"apiGroup"`
		APIVersion  string `json:"apiVersion"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int32 `json:"code"`
	} `json:"responseStatus"`
	StageTimestamp string `json:"stageTimestamp"`
	AuditID        string `json:"auditID"`
}

var writeVerbs = map[string]bool{"create": true, "update": true, "patch": true, "delete": true, "deletecollection": true}

// auditEntry turns one audit event into a GKE-shaped Admin Activity entry (nil: not a completed write).
func auditEntry(project, location, cluster string, ev k8sAuditEvent) (*loggingpb.LogEntry, error) {
	if ev.Stage != "ResponseComplete" || !writeVerbs[ev.Verb] || ev.ObjectRef == nil || strings.Contains(ev.RequestURI, "dryRun=") {
		return nil, nil
	}
	ref := ev.ObjectRef
	group := ref.APIGroup
	if group == "" {
		group = "core"
	}
	method := fmt.Sprintf("io.k8s.%s.%s.%s", group, ref.APIVersion, ref.Resource)
	if ref.Subresource != "" {
		method += "." + ref.Subresource
	}
	method += "." + ev.Verb
	name := group + "/" + ref.APIVersion
	if ref.Namespace != "" {
		name += "/namespaces/" + ref.Namespace
	}
	name += "/" + ref.Resource
	if ref.Name != "" {
		name += "/" + ref.Name
	}
	if ref.Subresource != "" {
		name += "/" + ref.Subresource
	}
	ts, err := time.Parse(time.RFC3339Nano, ev.StageTimestamp)
	if err != nil {
		return nil, err
	}
	payload := &audit.AuditLog{
		ServiceName:        "k8s.io",
		MethodName:         method,
		ResourceName:       name,
		AuthenticationInfo: &audit.AuthenticationInfo{PrincipalEmail: ev.User.Username},
	}
	if ev.ResponseStatus != nil && ev.ResponseStatus.Code >= 400 {
		// GKE records refused writes too, with their status: readers tell them apart by status.code.
		payload.Status = &spb.Status{Code: int32(httpToCode(ev.ResponseStatus.Code)), Message: http.StatusText(int(ev.ResponseStatus.Code))}
	}
	anyPayload, err := anypb.New(payload)
	if err != nil {
		return nil, err
	}
	return &loggingpb.LogEntry{
		LogName:   "projects/" + project + "/logs/cloudaudit.googleapis.com%2Factivity",
		Resource:  &monitoredres.MonitoredResource{Type: "k8s_cluster", Labels: map[string]string{"project_id": project, "location": location, "cluster_name": cluster}},
		Timestamp: timestamppb.New(ts),
		InsertId:  ev.AuditID,
		Payload:   &loggingpb.LogEntry_ProtoPayload{ProtoPayload: anyPayload},
	}, nil
}

// httpToCode maps a Kubernetes HTTP status to the google.rpc code GKE's entries carry.
func httpToCode(h int32) codes.Code {
	switch h {
	case 400, 422:
		return codes.InvalidArgument
	case 401:
		return codes.Unauthenticated
	case 403:
		return codes.PermissionDenied
	case 404:
		return codes.NotFound
	case 409:
		return codes.AlreadyExists
	case 429:
		return codes.ResourceExhausted
	}
	return codes.Unknown
}

// fieldsOf flattens the entry into the field paths the filter may name.
func fieldsOf(e *loggingpb.LogEntry) map[string]string {
	f := map[string]string{"logName": e.LogName, "resource.type": e.GetResource().GetType(),
		"timestamp": e.GetTimestamp().AsTime().UTC().Format(time.RFC3339Nano), "insertId": e.InsertId}
	for k, v := range e.GetResource().GetLabels() {
		f["resource.labels."+k] = v
	}
	var a audit.AuditLog
	if p := e.GetProtoPayload(); p != nil && p.UnmarshalTo(&a) == nil {
		f["protoPayload.serviceName"] = a.ServiceName
		f["protoPayload.methodName"] = a.MethodName
		f["protoPayload.resourceName"] = a.ResourceName
		f["protoPayload.authenticationInfo.principalEmail"] = a.GetAuthenticationInfo().GetPrincipalEmail()
	}
	return f
}

type term struct{ field, op, value string }

var filterFields = map[string]bool{"logName": true, "resource.type": true, "timestamp": true, "insertId": true,
	"resource.labels.project_id": true, "resource.labels.location": true, "resource.labels.cluster_name": true,
	"protoPayload.serviceName": true, "protoPayload.methodName": true, "protoPayload.resourceName": true,
	"protoPayload.authenticationInfo.principalEmail": true}

// parseFilter reads `FIELD OP VALUE [AND FIELD OP VALUE]...`; VALUE quoted ("..." with \" escapes) or bare.
func parseFilter(s string) ([]term, error) {
	var out []term
	rest := strings.TrimSpace(s)
	for rest != "" {
		i := strings.IndexAny(rest, "=!:<>")
		if i <= 0 {
			return nil, fmt.Errorf("expected FIELD OPERATOR VALUE at %q", rest)
		}
		field := strings.TrimSpace(rest[:i])
		if !filterFields[field] {
			return nil, fmt.Errorf("field %q is not supported by the sandbox's Logging stand-in", field)
		}
		op := rest[i : i+1]
		if i+1 < len(rest) && rest[i+1] == '=' && strings.Contains("!<>", op) {
			op += "="
		} else if op == "!" {
			return nil, fmt.Errorf("bad operator at %q", rest[i:])
		}
		rest = strings.TrimSpace(rest[i+len(op):])
		var value string
		if strings.HasPrefix(rest, `"`) {
			end := 1
			var b strings.Builder
			for ; end < len(rest) && rest[end] != '"'; end++ {
				if rest[end] == '\\' && end+1 < len(rest) {
					end++
				}
				b.WriteByte(rest[end])
			}
			if end >= len(rest) {
				return nil, fmt.Errorf("unterminated string in %q", s)
			}
			value, rest = b.String(), strings.TrimSpace(rest[end+1:])
		} else {
			j := strings.IndexAny(rest, " \t")
			if j < 0 {
				j = len(rest)
			}
			value, rest = rest[:j], strings.TrimSpace(rest[j:])
		}
		out = append(out, term{field, op, value})
		if rest == "" {
			break
		}
		if !strings.HasPrefix(rest, "AND ") {
			return nil, fmt.Errorf("only AND is supported between comparisons, at %q", rest)
		}
		rest = strings.TrimSpace(rest[4:])
	}
	return out, nil
}

func (t term) match(f map[string]string) bool {
	have := f[t.field]
	want := t.value
	if t.field == "timestamp" {
		h, err1 := time.Parse(time.RFC3339Nano, have)
		w, err2 := time.Parse(time.RFC3339Nano, want)
		if err1 != nil || err2 != nil {
			return false
		}
		have, want = h.UTC().Format("2006-01-02T15:04:05.000000000Z"), w.UTC().Format("2006-01-02T15:04:05.000000000Z")
	}
	switch t.op {
	case "=":
		return have == want
	case "!=":
		return have != want
	case ":":
		return strings.Contains(have, want) // "has": substring for strings
	case ">=":
		return have >= want
	case ">":
		return have > want
	case "<=":
		return have <= want
	case "<":
		return have < want
	}
	return false
}

// readAuditLog returns the GKE-shaped entries of one sandbox cluster's audit log.
func readAuditLog(path, project, location, cluster string) ([]*loggingpb.LogEntry, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []*loggingpb.LogEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev k8sAuditEvent
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue // a line being written
		}
		e, err := auditEntry(project, location, cluster, ev)
		if err != nil {
			return nil, err
		}
		if e != nil {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}

func (l *loggingSrv) ListLogEntries(_ context.Context, req *loggingpb.ListLogEntriesRequest) (*loggingpb.ListLogEntriesResponse, error) {
	if len(req.ResourceNames) == 0 {
		return nil, status.Error(codes.InvalidArgument, "resource_names: at least one resource is required")
	}
	projects := map[string]bool{}
	for _, r := range req.ResourceNames {
		p, ok := strings.CutPrefix(r, "projects/")
		if !ok || p == "" || strings.Contains(p, "/") {
			return nil, status.Errorf(codes.InvalidArgument, "resource_names: %q is not projects/PROJECT_ID (the sandbox has no folders or organizations)", r)
		}
		projects[p] = true
	}
	terms, err := parseFilter(req.Filter)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "filter: %v", err)
	}
	desc := false
	switch strings.TrimSpace(req.OrderBy) {
	case "", "timestamp asc":
	case "timestamp desc":
		desc = true
	default:
		return nil, status.Errorf(codes.InvalidArgument, "order_by: %q (want \"timestamp asc\" or \"timestamp desc\")", req.OrderBy)
	}
	size := int(req.PageSize)
	if size <= 0 || size > 1000 {
		size = 1000
	}
	start := 0
	if req.PageToken != "" {
		if start, err = strconv.Atoi(req.PageToken); err != nil || start < 0 {
			return nil, status.Error(codes.InvalidArgument, "page_token: not a token this server issued")
		}
	}

	type source struct{ path, project, location, cluster string }
	var sources []source
	l.gke.mu.Lock()
	for _, c := range l.gke.clusters {
		if projects[c.project] && c.provision != nil && c.provision.kubeconfig != "" {
			sources = append(sources, source{auditLogPath(c.provision.kubeconfig), c.project, c.location, c.c.Name})
		}
	}
	l.gke.mu.Unlock()
	var all []*loggingpb.LogEntry
	for _, s := range sources {
		entries, err := readAuditLog(s.path, s.project, s.location, s.cluster)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "reading %s: %v", s.path, err)
		}
		for _, e := range entries {
			f := fieldsOf(e)
			ok := true
			for _, t := range terms {
				if !t.match(f) {
					ok = false
					break
				}
			}
			if ok {
				all = append(all, e)
			}
		}
	}
	sort.SliceStable(all, func(i, j int) bool {
		a, b := all[i].Timestamp.AsTime(), all[j].Timestamp.AsTime()
		if desc {
			return a.After(b)
		}
		return a.Before(b)
	})
	if start > len(all) {
		start = len(all)
	}
	end := min(start+size, len(all))
	resp := &loggingpb.ListLogEntriesResponse{Entries: all[start:end]}
	if end < len(all) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return resp, nil
}
