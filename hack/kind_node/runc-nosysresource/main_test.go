package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSubcommandSkipsGlobalOptions(t *testing.T) {
	cmd, rest := subcommand([]string{"--root", "/run/runc", "--log", "/x/log.json", "--log-format", "json", "--systemd-cgroup", "create", "--bundle", "/b", "id"})
	if cmd != "create" || strings.Join(rest, " ") != "--bundle /b id" {
		t.Fatalf("got %q %q", cmd, rest)
	}
}

func TestFlagValueForms(t *testing.T) {
	for _, args := range [][]string{{"--bundle", "/b"}, {"--bundle=/b"}, {"-b", "/b"}} {
		if v, ok := flagValue(args, "--bundle", "-b"); !ok || v != "/b" {
			t.Fatalf("%q: got %q %v", args, v, ok)
		}
	}
}

func TestEditDropsOnlyMissingCapsAndKeepsNumbers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	spec := `{"ociVersion":"1.0.2","process":{"capabilities":{"bounding":["CAP_CHOWN","CAP_SYS_RESOURCE"],"effective":["CAP_SYS_RESOURCE"]}},"linux":{"resources":{"memory":{"limit":9223372036854771712}}}}`
	if err := os.WriteFile(path, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := edit(path, true, map[string]bool{"CAP_SYS_RESOURCE": true}); err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(path)
	s := string(out)
	if strings.Contains(s, "CAP_SYS_RESOURCE") || !strings.Contains(s, `"bounding":["CAP_CHOWN"]`) {
		t.Fatalf("capabilities not edited: %s", s)
	}
	if !strings.Contains(s, "9223372036854771712") {
		t.Fatalf("64-bit number changed: %s", s)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode changed: %v", st.Mode())
	}
}

func TestEditOfAnExecProcessFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "process.json")
	if err := os.WriteFile(path, []byte(`{"args":["sh"],"capabilities":{"permitted":["CAP_SYS_RESOURCE","CAP_KILL"]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := edit(path, false, map[string]bool{"CAP_SYS_RESOURCE": true}); err != nil {
		t.Fatal(err)
	}
	if out, _ := os.ReadFile(path); strings.Contains(string(out), "CAP_SYS_RESOURCE") {
		t.Fatalf("not edited: %s", out)
	}
}

func TestMissingReadsTheBoundingSet(t *testing.T) {
	// On any machine: a name is missing exactly when its bit is clear in CapBnd.
	m := missing()
	for name := range m {
		found := false
		for _, n := range capNames {
			found = found || n == name
		}
		if !found {
			t.Fatalf("unknown capability %q", name)
		}
	}
}
