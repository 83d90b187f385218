package main

import (
	"fmt"
	"hash/fnv"
	"regexp"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	// GKE's documented rule for cluster and node pool names.
	resourceNameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	// Zones look like us-central1-b, regions like us-central1.
	zoneRE    = regexp.MustCompile(`^[a-z]+-[a-z]+[0-9]+-[a-z]$`)
	regionRE  = regexp.MustCompile(`^[a-z]+-[a-z]+[0-9]+$`)
	projectRE = regexp.MustCompile(`^[a-z][-a-z0-9]{4,28}[a-z0-9]$`)
)

func validName(field, name string) error {
	if len(name) > 40 || !resourceNameRE.MatchString(name) {
		return status.Errorf(codes.InvalidArgument,
			"Invalid value for field %q: %q. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,38}[a-z0-9])?)' (only alphanumerics and '-' allowed, must start with a letter and end with an alphanumeric, and must be no longer than 40 characters).",
			field, name)
	}
	return nil
}

func validLocation(loc string) error {
	if !zoneRE.MatchString(loc) && !regionRE.MatchString(loc) {
		return status.Errorf(codes.InvalidArgument, "Location %q is not a valid zone or region.", loc)
	}
	return nil
}

func validProject(p string) error {
	if !projectRE.MatchString(p) && !regexp.MustCompile(`^[0-9]{6,20}$`).MatchString(p) {
		return status.Errorf(codes.InvalidArgument, "Invalid project id %q.", p)
	}
	return nil
}

// projectNumber gives every sandbox project a stable 12-digit number, as links and service agents use numbers.
func projectNumber(project string) string {
	h := fnv.New64a()
	h.Write([]byte(project))
	return fmt.Sprintf("%012d", h.Sum64()%1_000_000_000_000)
}

// zonesOf returns the zones a cluster or node pool spans: the zone itself, or three zones of a region
// (GKE's default for regional clusters).
func zonesOf(location string) []string {
	if zoneRE.MatchString(location) {
		return []string{location}
	}
	return []string{location + "-a", location + "-b", location + "-c"}
}

// regionOf maps a zone (us-central1-b) to its region (us-central1); a region maps to itself.
func regionOf(location string) string {
	if zoneRE.MatchString(location) {
		return location[:strings.LastIndex(location, "-")]
	}
	return location
}

// loc is a parsed projects/P/locations/L parent; the deprecated project_id/zone fields are accepted too.
type loc struct{ project, location string }

func parseParent(parent, projectID, zone string) (loc, error) {
	if parent == "" && projectID != "" {
		parent = "projects/" + projectID + "/locations/" + zone
	}
	p := strings.Split(parent, "/")
	if len(p) != 4 || p[0] != "projects" || p[2] != "locations" || p[1] == "" || p[3] == "" {
		return loc{}, status.Errorf(codes.InvalidArgument, "Invalid parent %q: want projects/*/locations/*.", parent)
	}
	if err := validProject(p[1]); err != nil {
		return loc{}, err
	}
	if p[3] != "-" {
		if err := validLocation(p[3]); err != nil {
			return loc{}, err
		}
	}
	return loc{p[1], p[3]}, nil
}

// parseName splits projects/P/locations/L/<coll>/X[/<sub>/Y] (or the deprecated fields) into its parts.
func parseName(name string, want []string, legacy ...string) (loc, []string, error) {
	if name == "" && len(legacy) >= 2 && legacy[0] != "" {
		name = "projects/" + legacy[0] + "/locations/" + legacy[1]
		for i, c := range want {
			name += "/" + c + "/" + legacy[2+i]
		}
	}
	p := strings.Split(name, "/")
	if len(p) != 4+2*len(want) || p[0] != "projects" || p[2] != "locations" {
		return loc{}, nil, status.Errorf(codes.InvalidArgument, "Invalid resource name %q: want projects/*/locations/*/%s/*.", name, strings.Join(want, "/*/"))
	}
	var ids []string
	for i, c := range want {
		if p[4+2*i] != c || p[5+2*i] == "" {
			return loc{}, nil, status.Errorf(codes.InvalidArgument, "Invalid resource name %q: want projects/*/locations/*/%s/*.", name, strings.Join(want, "/*/"))
		}
		ids = append(ids, p[5+2*i])
	}
	return loc{p[1], p[3]}, ids, nil
}
