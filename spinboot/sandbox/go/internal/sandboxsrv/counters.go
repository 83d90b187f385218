package sandboxsrv

import (
	"strings"
	"sync"

	"google.golang.org/grpc/status"
)

// Kind classifies a method so tests can assert "a second apply makes zero mutating calls" without listing
// every method: read (Get*, List*, Test*, ...), data (Pub/Sub message traffic), or mutating (everything else).
func Kind(fullMethod string) string {
	m := fullMethod[strings.LastIndex(fullMethod, "/")+1:]
	switch m {
	case "Publish", "Pull", "StreamingPull", "Acknowledge", "ModifyAckDeadline":
		return "data"
	}
	for _, p := range []string{"Get", "List", "Test", "Fetch", "Check", "Query", "Search", "Lint"} {
		if strings.HasPrefix(m, p) {
			return "read"
		}
	}
	return "mutating"
}

// MethodCount is what the admin endpoint reports per gRPC method.
type MethodCount struct {
	Kind     string         `json:"kind"`
	Calls    int            `json:"calls"`
	Errors   int            `json:"errors"`
	Injected int            `json:"injected"`
	Codes    map[string]int `json:"codes,omitempty"` // error code name -> count
}

// Counters counts calls as they arrive (before fault injection), so a retried call counts every attempt.
type Counters struct {
	mu sync.Mutex
	m  map[string]*MethodCount
}

func NewCounters() *Counters { return &Counters{m: map[string]*MethodCount{}} }

func (c *Counters) get(method string) *MethodCount {
	mc := c.m[method]
	if mc == nil {
		mc = &MethodCount{Kind: Kind(method), Codes: map[string]int{}}
		c.m[method] = mc
	}
	return mc
}

func (c *Counters) begin(method string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.get(method).Calls++
}

func (c *Counters) end(method string, injected bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	mc := c.get(method)
	if injected {
		mc.Injected++
	}
	if err != nil {
		mc.Errors++
		mc.Codes[strings.ToUpper(camelToSnake(status.Code(err).String()))]++
	}
}

// Snapshot returns per-method counts keyed by full method name plus totals per kind.
func (c *Counters) Snapshot() map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	methods := map[string]MethodCount{}
	totals := map[string]int{"read": 0, "mutating": 0, "data": 0}
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

func (c *Counters) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = map[string]*MethodCount{}
}
