// runc-nosysresource runs runc with every capability the machine's bounding set lacks removed
// from the OCI spec it is given, so `--privileged` (which asks for all of them) starts here.
//
// It is the default runtime of the project's own Docker engine (hack/kind_node/engine.py) and the
// runc BinaryName of containerd inside the project's kind node image; it is never installed on the
// machine's own engine. On a machine whose bounding set is full it changes nothing.
//
// Edited: config.json of the bundle (create, run, restore: --bundle/-b, else the current
// directory) and the process file of exec (--process/-p). Every other call is passed through.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

const runc = "/usr/bin/runc"

// capability numbers to names, as in linux/capability.h
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// missing: the capabilities this process's bounding set lacks (no process here can grant them).
func missing() map[string]bool {
	out := map[string]bool{}
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			bnd, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return out
			}
			for i, name := range capNames {
				if bnd&(1<<uint(i)) == 0 {
					out[name] = true
				}
			}
		}
	}
	return out
}

// strip removes the missing capabilities from caps ({"bounding": [...], "effective": [...], ...}).
func strip(caps any, drop map[string]bool) bool {
	m, ok := caps.(map[string]any)
	if !ok {
		return false
	}
	changed := false
	for set, list := range m {
		names, ok := list.([]any)
		if !ok {
			continue
		}
		kept := make([]any, 0, len(names))
		for _, n := range names {
			if s, _ := n.(string); drop[s] {
				changed = true
				continue
			}
			kept = append(kept, n)
		}
		m[set] = kept
	}
	return changed
}

// edit rewrites the JSON file at path; process says where the process object is.
func edit(path string, inConfig bool, drop map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // keep 64-bit numbers (memory limits, device numbers) exact
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	proc := doc
	if inConfig {
		p, ok := doc["process"].(map[string]any)
		if !ok {
			return nil
		}
		proc = p
	}
	if !strip(proc["capabilities"], drop) {
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".nosysresource"
	if err := os.WriteFile(tmp, out, st.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// flagValue finds --name V, --name=V or -s V in args.
func flagValue(args []string, long, short string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, long+"="); ok {
			return v, true
		}
		if (a == long || a == short) && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// subcommand: the first word after runc's global options (those taking a value are skipped).
func subcommand(args []string) (string, []string) {
	withValue := map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return a, args[i+1:]
		}
		if withValue[a] {
			i++
		}
	}
	return "", nil
}

func main() {
	args := os.Args[1:]
	if drop := missing(); len(drop) > 0 {
		cmd, rest := subcommand(args)
		var err error
		switch cmd {
		case "create", "run", "restore":
			bundle, ok := flagValue(rest, "--bundle", "-b")
			if !ok {
				bundle = "."
			}
			err = edit(filepath.Join(bundle, "config.json"), true, drop)
		case "exec":
			if process, ok := flagValue(rest, "--process", "-p"); ok {
				err = edit(process, false, drop)
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "runc-nosysresource: %v\n", err)
			os.Exit(1)
		}
	}
	err := syscall.Exec(runc, append([]string{runc}, args...), os.Environ())
	fmt.Fprintf(os.Stderr, "runc-nosysresource: exec %s: %v\n", runc, err)
	os.Exit(1)
}
