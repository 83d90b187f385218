package main

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// rule is one HTTP fault rule. Spec grammar (rules separated by ';' or newlines):
//
//	MATCH=CODE[:count=N][:rate=F][:delay=D][:after][:msg=TEXT]
//
// MATCH is "*", an HTTP verb ("PATCH"), or "VERB SUBSTRING" / "* SUBSTRING" where SUBSTRING must occur in the
// URL path. CODE is an HTTP status (429, 500, 503, ...), RESET (the client's TCP connection is reset) or OK
// (with delay=, latency only). ":after" forwards the request first, so its effect happens, and then fails the
// response. Rules are tried in order; a rule whose rate misses lets the next rule try.
type rule struct {
	Match     string        `json:"match"`
	Code      string        `json:"code"`
	Count     int           `json:"count,omitempty"`
	Unlimited bool          `json:"unlimited"`
	Rate      float64       `json:"rate,omitempty"`
	Delay     time.Duration `json:"delay_ns,omitempty"`
	After     bool          `json:"after,omitempty"`
	Msg       string        `json:"msg,omitempty"`
	Fired     int           `json:"fired"`
	verb      string
	substr    string
	status    int // 0 for RESET and OK
}

func parseRules(spec string) ([]*rule, error) {
	var out []*rule
	for _, raw := range strings.FieldsFunc(spec, func(r rune) bool { return r == ';' || r == '\n' }) {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		match, rest, ok := strings.Cut(raw, "=")
		match = strings.TrimSpace(match)
		if !ok || match == "" {
			return nil, fmt.Errorf("fault %q: want MATCH=CODE[:count=N][:rate=F][:delay=D][:after][:msg=TEXT]", raw)
		}
		parts := strings.Split(rest, ":")
		r := &rule{Match: match, Code: strings.ToUpper(strings.TrimSpace(parts[0])), Unlimited: true}
		verb, sub, _ := strings.Cut(match, " ")
		r.verb, r.substr = strings.ToUpper(strings.TrimSpace(verb)), strings.TrimSpace(sub)
		switch r.Code {
		case "RESET", "OK":
		default:
			n, err := strconv.Atoi(r.Code)
			if err != nil || n < 400 || n > 599 {
				return nil, fmt.Errorf("fault %q: code must be an HTTP error status (400-599), RESET or OK", raw)
			}
			r.status = n
		}
		for _, opt := range parts[1:] {
			k, v, _ := strings.Cut(opt, "=")
			var err error
			switch strings.TrimSpace(k) {
			case "count":
				r.Count, err = strconv.Atoi(v)
				r.Unlimited = false
				if err == nil && r.Count < 1 {
					err = fmt.Errorf("must be >= 1")
				}
			case "rate":
				r.Rate, err = strconv.ParseFloat(v, 64)
				if err == nil && (r.Rate <= 0 || r.Rate > 1) {
					err = fmt.Errorf("must be in (0, 1]")
				}
			case "delay":
				r.Delay, err = time.ParseDuration(v)
			case "after":
				r.After = true
			case "msg":
				r.Msg = v
			default:
				err = fmt.Errorf("unknown option")
			}
			if err != nil {
				return nil, fmt.Errorf("fault %q: option %q: %v", raw, opt, err)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

func (r *rule) matches(method, path string) bool {
	if r.verb != "*" && r.verb != method {
		return false
	}
	return r.substr == "" || strings.Contains(path, r.substr)
}

type ruleSet struct {
	mu    sync.Mutex
	rules []*rule
}

func (rs *ruleSet) add(rules []*rule) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.rules = append(rs.rules, rules...)
}

func (rs *ruleSet) clear() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.rules = nil
}

func (rs *ruleSet) list() []rule {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make([]rule, 0, len(rs.rules))
	for _, r := range rs.rules {
		out = append(out, *r)
	}
	return out
}

// pick returns a copy of the first live matching rule whose rate hits (consuming one count), or nil.
func (rs *ruleSet) pick(method, path string) *rule {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, r := range rs.rules {
		if (!r.Unlimited && r.Count <= 0) || !r.matches(method, path) {
			continue
		}
		if r.Rate > 0 && rand.Float64() >= r.Rate {
			continue
		}
		if !r.Unlimited {
			r.Count--
		}
		r.Fired++
		cp := *r
		return &cp
	}
	return nil
}
