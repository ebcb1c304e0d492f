package builds

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestIDsReadBackAsWritten(t *testing.T) {
	for _, tt := range []struct {
		name string
		id   ID
		want string
	}{
		{"a step's container", ID{Build: "0a1b2c3d4e", Seq: 3, Service: "app"}, "crunci-0a1b2c3d4e-3-app"},
		{"a service name made to fit", ID{Build: "0a1b2c3d4e", Seq: 12, Service: "my_db.v2"}, "crunci-0a1b2c3d4e-12-my-db-v2"},
		{"a credential service's container", ID{Build: "b", Seq: 1, Role: RoleDockercfg, Service: "creds"}, "crunci-b-1-dockercfg-creds"},
		{"an image build", ID{Build: "b", Seq: 7, Role: RoleBuild}, "crunci-b-7-build"},
		{"a view of an image", ID{Build: "b", Role: RoleView, Service: "app"}, "crunci-b-view-app"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.id.String()
			if got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
			back, ok := ParseID(got)
			want := tt.id
			want.Service = Sanitize(want.Service)
			if want.Role == RoleBuild {
				want.Service = ""
			}
			if !ok {
				t.Fatalf("ParseID(%q) failed", got)
			}
			if diff := cmp.Diff(want, back); diff != "" {
				t.Errorf("ParseID (-want +got):\n%s", diff)
			}
		})
	}
	// A RUN container of an image build reads as the build's.
	if id, ok := ParseID("crunci-b-7-build-3"); !ok || id.Role != RoleBuild || id.Seq != 7 {
		t.Errorf("ParseID of a RUN container = %+v, %v", id, ok)
	}
	for _, s := range []string{"other-b-1-app", "crunci-", "crunci-b", "crunci-b-x-app", "crunci-b-0-app", "crunci-b-view-"} {
		if id, ok := ParseID(s); ok {
			t.Errorf("ParseID(%q) = %+v, want it refused", s, id)
		}
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{"app": "app", "my_db.v2": "my-db-v2", "__": "svc", "ÄÖ-x": "x", "a--b": "a-b"} {
		if got := Sanitize(in); got != want {
			t.Errorf("Sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}
