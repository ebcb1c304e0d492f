package config

import (
	"testing"
	"time"
)

func TestStepTimeoutTakesDurationsAndSeconds(t *testing.T) {
	steps, err := ParseSteps("codeship-steps.yml", []byte(`
- {service: app, timeout: 90s}
- {service: app, timeout: 600}
- type: parallel
  timeout: 1h30m
  steps:
  - {service: app}
`))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []time.Duration{90 * time.Second, 10 * time.Minute, 90 * time.Minute} {
		if got := steps[i].Timeout; got != want {
			t.Errorf("step %d: timeout %s, want %s", i, got, want)
		}
	}
	if got := steps[2].Steps[0].Timeout; got != 0 {
		t.Errorf("a group's timeout was copied to its child: %s", got)
	}
}

func TestStepTimeoutRefusesWhatIsNotAPositiveDuration(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{"soon", `codeship-steps.yml:1: key "timeout": "soon" is not a duration (write e.g. 90s, 10m or 600)`},
		{"0", `codeship-steps.yml:1: key "timeout": "0" is not positive`},
		{"-5s", `codeship-steps.yml:1: key "timeout": "-5s" is not positive`},
		{"[1]", `codeship-steps.yml:1: key "timeout": want a string, got a list`},
	} {
		t.Run(tc.value, func(t *testing.T) {
			_, err := ParseSteps("codeship-steps.yml", []byte("- {service: app, timeout: "+tc.value+"}\n"))
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v\nwant %s", err, tc.want)
			}
		})
	}
}
