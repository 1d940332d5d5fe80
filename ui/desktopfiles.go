package ui

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// installedApp is a program listed in a .desktop file.
type installedApp struct {
	Name string
	Exec []string // the command with field codes removed
	File string
}

// appDirs are where .desktop files are read from.
var appDirs = []string{"/usr/share/applications", "/usr/local/share/applications"}

// installedApps lists the applications of the given directories, by name;
// a file later in the list does not override an earlier one with the same ID.
func installedApps(dirs []string) []installedApp {
	seen := map[string]bool{}
	var out []installedApp
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.desktop"))
		for _, f := range files {
			id := filepath.Base(f)
			if seen[id] {
				continue
			}
			seen[id] = true
			fh, err := os.Open(f)
			if err != nil {
				continue
			}
			a, ok := parseDesktopEntry(fh)
			fh.Close()
			if ok {
				a.File = f
				out = append(out, a)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return strings.ToLower(out[i].Name) < strings.ToLower(out[j].Name) })
	return out
}

// parseDesktopEntry reads the [Desktop Entry] group of a .desktop file. It
// returns false for entries that are not shown in menus (NoDisplay, Hidden),
// are not applications, or have no command.
func parseDesktopEntry(r io.Reader) (installedApp, bool) {
	var a installedApp
	var exec string
	group := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			group = line[1 : len(line)-1]
			continue
		}
		if group != "Desktop Entry" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch key {
		case "Name":
			a.Name = value
		case "Exec":
			exec = value
		case "Type":
			if value != "Application" {
				return a, false
			}
		case "NoDisplay", "Hidden":
			if strings.EqualFold(value, "true") {
				return a, false
			}
		case "Terminal":
			if strings.EqualFold(value, "true") {
				return a, false // needs a terminal around it: not a GUI app to move
			}
		}
	}
	if a.Name == "" || exec == "" {
		return a, false
	}
	a.Exec = execArgs(exec)
	return a, len(a.Exec) > 0
}

// execArgs splits an Exec value into arguments, following the Desktop Entry
// spec's quoting, and removes field codes (%f, %U, …; %% is a percent sign).
func execArgs(exec string) []string {
	var args []string
	var cur strings.Builder
	inArg, quoted := false, false
	for i := 0; i < len(exec); i++ {
		c := exec[i]
		switch {
		case quoted && c == '\\' && i+1 < len(exec):
			i++
			cur.WriteByte(exec[i])
		case c == '"':
			quoted = !quoted
			inArg = true
		case !quoted && (c == ' ' || c == '\t'):
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	out := args[:0]
	for _, a := range args {
		a = stripFieldCodes(a)
		if a != "" {
			out = append(out, a)
		}
	}
	return out
}

func stripFieldCodes(arg string) string {
	if !strings.Contains(arg, "%") {
		return arg
	}
	var b strings.Builder
	for i := 0; i < len(arg); i++ {
		if arg[i] == '%' && i+1 < len(arg) {
			i++
			if arg[i] == '%' {
				b.WriteByte('%')
			}
			continue
		}
		b.WriteByte(arg[i])
	}
	return b.String()
}

// appNameFor makes an app name (as the daemon accepts: short, no slashes)
// from a program's name or command.
func appNameFor(name string, cmd []string) string {
	base := name
	if len(cmd) > 0 {
		base = filepath.Base(cmd[0])
	}
	var b strings.Builder
	for _, r := range strings.ToLower(base) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), "-.")
	if s == "" {
		s = "app"
	}
	if len(s) > 32 {
		s = s[:32]
	}
	return s
}

// uniqueName adds -2, -3… to name until no app in s has it.
func uniqueName(name string, s State) string {
	n := name
	for i := 2; ; i++ {
		if _, taken := s.App(n); !taken {
			return n
		}
		n = name + "-" + strconv.Itoa(i)
	}
}

// splitCommand splits a command typed by the user into arguments, with
// shell-like quotes ('…', "…") and backslash escapes; it runs no shell.
func splitCommand(s string) []string {
	var args []string
	var cur strings.Builder
	inArg := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote == '\'':
			cur.WriteByte(c)
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inArg = true
		case quote == '"':
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote = c
			inArg = true
		case c == ' ' || c == '\t':
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args
}
