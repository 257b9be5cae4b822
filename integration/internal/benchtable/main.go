// Command benchtable passes `go test -bench` output through unchanged and
// then prints a summary: per benchmark and metric, the median over the
// runs (-count), next to the baseline of its group and their ratio. A
// benchmark's group is its name without the last element; the baseline is
// the member whose last element is one of -base. It exits 1 when the
// output reports a failure or has no benchmark results.
//
//	go test -run '^$' -bench . ./... 2>&1 | go run ./integration/internal/benchtable
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

func main() {
	base := flag.String("base", "openssh-git,openssh-true,openssh-sshd,git-ls-remote,direct", "comma-separated last name elements of the baselines")
	flag.Parse()
	res, err := read(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	fmt.Println()
	write(os.Stdout, res, strings.Split(*base, ","))
	switch {
	case res.failed:
		fmt.Fprintln(os.Stderr, "benchtable: the benchmark run reported a failure (see above)")
		os.Exit(1)
	case len(res.order) == 0:
		fmt.Fprintln(os.Stderr, "benchtable: no benchmark results in the input")
		os.Exit(1)
	}
}

// results are the parsed benchmark lines, in order of first appearance.
type results struct {
	order   []string                        // benchmark names without "Benchmark" and the -GOMAXPROCS suffix
	values  map[string]map[string][]float64 // name -> unit -> one value per run
	units   map[string][]string             // name -> units in the order reported
	skipped []string                        // "name: reason"
	failed  bool
}

var (
	benchLine = regexp.MustCompile(`^Benchmark(\S+)\s+\d+\s+(.+)$`)
	procs     = regexp.MustCompile(`-\d+$`)
	skipLine  = regexp.MustCompile(`^\s*--- SKIP: Benchmark(\S+)`)
	logPrefix = regexp.MustCompile(`^\s*\S+\.go:\d+: `)
)

// standard are the units the testing package reports itself; a benchmark
// that reports its own metrics is summarised by those.
var standard = []string{"ns/op", "B/op", "allocs/op", "MB/s"}

// read parses r, copying every line to echo as it goes.
func read(r io.Reader, echo io.Writer) (*results, error) {
	res := &results{values: map[string]map[string][]float64{}, units: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	lastSkip := ""
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(echo, line)
		if lastSkip != "" { // the reason is the next line, indented
			res.skipped = append(res.skipped, procs.ReplaceAllString(lastSkip, "")+": "+logPrefix.ReplaceAllString(line, ""))
			lastSkip = ""
			continue
		}
		if m := skipLine.FindStringSubmatch(line); m != nil {
			lastSkip = m[1]
			continue
		}
		if strings.HasPrefix(line, "FAIL") || strings.HasPrefix(strings.TrimSpace(line), "--- FAIL") || strings.HasPrefix(line, "panic:") {
			res.failed = true
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name := procs.ReplaceAllString(m[1], "")
		f := strings.Fields(m[2])
		if len(f)%2 != 0 {
			continue
		}
		if res.values[name] == nil {
			res.values[name] = map[string][]float64{}
			res.order = append(res.order, name)
		}
		for i := 0; i < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			unit := f[i+1]
			if _, seen := res.values[name][unit]; !seen {
				res.units[name] = append(res.units[name], unit)
			}
			res.values[name][unit] = append(res.values[name][unit], v)
		}
	}
	return res, sc.Err()
}

// write prints the summary table.
func write(w io.Writer, res *results, bases []string) {
	fmt.Fprintln(w, "Summary: median over runs; ratio = value / baseline of the same group and metric (same machine, same run)")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BENCHMARK\tMETRIC\tMEDIAN\tBASELINE\tRATIO")
	for _, name := range res.order {
		group, _ := split(name)
		baseName := ""
		for _, other := range res.order {
			if g, l := split(other); g == group && slices.Contains(bases, l) {
				baseName = other
				break
			}
		}
		for _, unit := range shown(res.units[name]) {
			v := median(res.values[name][unit])
			b, r := "-", "-"
			switch {
			case baseName == name:
				b = "(baseline)"
			case baseName != "":
				if bv, ok := res.values[baseName][unit]; ok {
					_, bl := split(baseName)
					b = bl
					if m := median(bv); m != 0 {
						r = strconv.FormatFloat(v/m, 'f', 2, 64) + "x"
					}
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, unit, format(v), b, r)
		}
	}
	tw.Flush()
	for _, s := range res.skipped {
		fmt.Fprintf(w, "skipped %s\n", s)
	}
}

// shown are the units to summarise: a benchmark's own metrics, or the
// standard ones when it reports none.
func shown(units []string) []string {
	var own []string
	for _, u := range units {
		if !slices.Contains(standard, u) {
			own = append(own, u)
		}
	}
	if len(own) > 0 {
		return own
	}
	return units
}

func split(name string) (group, leaf string) {
	i := strings.LastIndex(name, "/")
	if i < 0 {
		return "", name
	}
	return name[:i], name[i+1:]
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func format(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}
