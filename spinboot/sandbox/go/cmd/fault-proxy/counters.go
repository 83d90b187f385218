package main

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// reviews are POSTs that change nothing: a second apply may make them and still be "no mutating call".
var reviews = map[string]bool{"subjectaccessreviews": true, "selfsubjectaccessreviews": true,
	"localsubjectaccessreviews": true, "selfsubjectrulesreviews": true, "tokenreviews": true}

// classify names a request for the counters ("PATCH rolebindings", "GET storage b/iam") and says whether it
// reads or mutates.
func classify(r *http.Request, style string) (key, kind string) {
	path := strings.Trim(r.URL.Path, "/")
	var res string
	if style == "kubernetes" {
		res = kubeResource(strings.Split(path, "/"))
	} else {
		res = googleResource(strings.Split(path, "/"))
	}
	kind = "mutating"
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		kind = "read"
	case http.MethodPost:
		if reviews[strings.Split(res, "/")[0]] {
			kind = "read"
		}
	}
	if r.URL.Query().Get("dryRun") == "All" {
		kind = "read"
	}
	return r.Method + " " + res, kind
}

// kubeResource takes the resource (and subresource) from /api/v1/... and /apis/GROUP/VERSION/... paths.
func kubeResource(seg []string) string {
	switch {
	case len(seg) >= 2 && seg[0] == "api":
		seg = seg[2:]
	case len(seg) >= 3 && seg[0] == "apis":
		seg = seg[3:]
	default:
		if len(seg) > 0 && seg[0] != "" {
			return "/" + seg[0] // /readyz, /version, /openapi...
		}
		return "/"
	}
	if len(seg) > 0 && seg[0] == "watch" { // legacy /api/v1/watch/...: counted as the GET it is
		seg = seg[1:]
	}
	if len(seg) >= 2 && seg[0] == "namespaces" && len(seg) != 2 {
		seg = seg[2:] // namespaced: namespaces/NS/RESOURCE[/NAME[/SUB]]
	}
	switch len(seg) {
	case 0:
		return "discovery"
	case 1, 2:
		return seg[0]
	default:
		return seg[0] + "/" + seg[2]
	}
}

// googleResource keeps the path's shape and drops the ids that follow collection names.
func googleResource(seg []string) string {
	out := make([]string, 0, len(seg))
	skip := false
	for _, s := range seg {
		if skip {
			out = append(out, "{}")
			skip = false
			continue
		}
		out = append(out, s)
		skip = s == "b" || s == "o" || s == "projects"
	}
	return strings.Join(out, "/")
}

type count struct {
	Kind     string         `json:"kind"`
	Calls    int            `json:"calls"`
	Errors   int            `json:"errors"`
	Injected int            `json:"injected"`
	Codes    map[string]int `json:"codes,omitempty"`
}

type counters struct {
	mu sync.Mutex
	m  map[string]*count
}

func newCounters() *counters { return &counters{m: map[string]*count{}} }

func (c *counters) begin(key, kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	mc := c.m[key]
	if mc == nil {
		mc = &count{Kind: kind, Codes: map[string]int{}}
		c.m[key] = mc
	}
	mc.Calls++
}

// end records how the call ended: an HTTP status (errors are >= 400) or "RESET".
func (c *counters) end(key string, injected bool, status int, reset bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	mc := c.m[key]
	if injected {
		mc.Injected++
	}
	switch {
	case reset:
		mc.Errors++
		mc.Codes["RESET"]++
	case status >= 400:
		mc.Errors++
		mc.Codes[strconv.Itoa(status)]++
	}
}

func (c *counters) snapshot() map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	methods := map[string]count{}
	totals := map[string]int{"read": 0, "mutating": 0}
	for k, v := range c.m {
		cp := *v
		cp.Codes = map[string]int{}
		for ck, cv := range v.Codes {
			cp.Codes[ck] = cv
		}
		methods[k] = cp
		totals[v.Kind] += v.Calls
	}
	return map[string]any{"methods": methods, "totals": totals}
}

func (c *counters) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = map[string]*count{}
}
