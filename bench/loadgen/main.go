// Command loadgen drives one unary gRPC method at a fixed rate, open loop, and prints the
// latency distribution as JSON. It is the light client of the router benchmark
// (bench/router_bench.py --loadgen): on a two-core machine the client shares the CPUs with the
// server, and a client that spends half a millisecond of CPU per call (as ghz does, building
// each message from JSON) inflates the server's tail; this one sends prebuilt request bytes.
//
// Calls are started on a fixed schedule, one every 1/rate seconds, each on its own goroutine
// and without waiting for earlier answers (open loop: a slow server does not slow the schedule
// down). Each call has two latencies: from its send (`p50_ms`, `p99_ms`, ...: what ghz reports)
// and from the time it was due (`due_p99_ms`, ...), which adds how late the client itself sent
// it -- its timer waking late, or its thread waiting for a CPU the server is using. On a quiet
// machine the two agree; here the gap is the client's own lateness (`send_late_*`).
//
// Calls that fail are counted by status code; `retry_info` counts those whose status details
// carry a google.rpc.RetryInfo (a refusal a client can act on), and the `ok_*` latencies are
// those of the calls that succeeded (what load shedding must keep low while it refuses);
// `error_p50_ms` is the median latency of the failed calls by code (a failure that came at once,
// or one that waited in a queue first).
//
// The request file holds the serialized request messages, each preceded by its length as a
// 4-byte big-endian integer; calls cycle through them.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
)

// rawCodec passes request and response bytes through unchanged: the requests are serialized
// once, up front, and answers are not decoded (their status is what counts).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

// Name is "proto" so that the content type is the standard application/grpc+proto.
func (rawCodec) Name() string { return "proto" }

var _ encoding.Codec = rawCodec{}

type result struct {
	Count        int                `json:"count"`
	Errors       map[string]int     `json:"errors"`
	ErrorP50Ms   map[string]float64 `json:"error_p50_ms"`
	RetryInfo    int                `json:"retry_info"`
	OK           int                `json:"ok"`
	OKP50Ms      float64            `json:"ok_p50_ms"`
	OKP99Ms      float64            `json:"ok_p99_ms"`
	OKP999Ms     float64            `json:"ok_p999_ms"`
	AchievedRate float64            `json:"achieved_rate"`
	P50Ms        float64            `json:"p50_ms"`
	P90Ms        float64            `json:"p90_ms"`
	P99Ms        float64            `json:"p99_ms"`
	P999Ms       float64            `json:"p999_ms"`
	MaxMs        float64            `json:"max_ms"`
	DueP50Ms     float64            `json:"due_p50_ms"`
	DueP99Ms     float64            `json:"due_p99_ms"`
	DueP999Ms    float64            `json:"due_p999_ms"`
	LateP99Ms    float64            `json:"send_late_p99_ms"`
	LateMaxMs    float64            `json:"send_late_max_ms"`
	ClientCPUUs  float64            `json:"client_cpu_us_per_call"`
}

func readRequests(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for len(data) > 0 {
		if len(data) < 4 {
			return nil, fmt.Errorf("%s: truncated length prefix", path)
		}
		n := binary.BigEndian.Uint32(data)
		if uint32(len(data)-4) < n {
			return nil, fmt.Errorf("%s: truncated message", path)
		}
		out = append(out, data[4:4+n])
		data = data[4+n:]
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no requests", path)
	}
	return out, nil
}

func hasRetryInfo(err error) bool {
	for _, detail := range status.Convert(err).Details() {
		if _, ok := detail.(*errdetails.RetryInfo); ok {
			return true
		}
	}
	return false
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)) * p / 100)
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return float64(sorted[i]) / 1e6
}

func main() {
	target := flag.String("target", "", "host:port of the server (plaintext)")
	method := flag.String("method", "/domicile.v1.ResidencyService/Decide", "full method name")
	requestsFile := flag.String("requests", "", "file of length-prefixed serialized requests")
	rate := flag.Int("rate", 1000, "calls per second")
	duration := flag.Duration("duration", 10*time.Second, "measured duration")
	warmup := flag.Duration("warmup", 2*time.Second, "duration before the measurement (calls made, not counted)")
	timeout := flag.Duration("timeout", 5*time.Second, "deadline of each call")
	procs := flag.Int("procs", 1, "GOMAXPROCS: threads running Go code (the server needs the other cores)")
	flag.Parse()
	if *target == "" || *requestsFile == "" || *rate <= 0 || *rate > 1_000_000 || *warmup < 0 ||
		*duration < time.Second/time.Duration(max(*rate, 1)) {
		fmt.Fprintln(os.Stderr, "usage: loadgen -target HOST:PORT -requests FILE [-rate N (1..1000000)] "+
			"[-duration D (at least one call)] [-warmup D]")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*procs)
	requests, err := readRequests(*requestsFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	conn, err := grpc.Dial(*target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	defer conn.Close()
	// One call before the clock starts, so that connecting is not measured.
	var answer []byte
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err = conn.Invoke(ctx, *method, &requests[0], &answer, grpc.WaitForReady(true))
	cancel()
	if err != nil && status.Code(err) != codes.ResourceExhausted {
		fmt.Fprintln(os.Stderr, "loadgen: first call:", err)
		os.Exit(1)
	}

	interval := time.Second / time.Duration(*rate)
	skip := int(*warmup / interval)
	total := skip + int(*duration/interval)
	latencies := make([]time.Duration, total) // from send
	lateness := make([]time.Duration, total)  // send time - due time
	failures := make([]string, total)
	retryInfo := make([]bool, total)
	var wg sync.WaitGroup
	start := time.Now()
	var cpuStart float64
	for i := 0; i < total; i++ {
		due := start.Add(time.Duration(i) * interval)
		if i == skip {
			cpuStart = cpuSeconds()
		}
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func(i int, due time.Time) {
			defer wg.Done()
			var answer []byte
			sent := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), *timeout)
			err := conn.Invoke(ctx, *method, &requests[i%len(requests)], &answer)
			cancel()
			latencies[i] = time.Since(sent)
			lateness[i] = sent.Sub(due)
			if err != nil {
				failures[i] = status.Code(err).String()
				retryInfo[i] = hasRetryInfo(err)
			}
		}(i, due)
	}
	wg.Wait()
	elapsed := time.Since(start.Add(time.Duration(skip) * interval))
	cpu := cpuSeconds() - cpuStart

	measured := append([]time.Duration(nil), latencies[skip:]...)
	var ok []time.Duration
	for i := skip; i < total; i++ {
		if failures[i] == "" {
			ok = append(ok, latencies[i])
		}
	}
	sort.Slice(ok, func(a, b int) bool { return ok[a] < ok[b] })
	late := append([]time.Duration(nil), lateness[skip:]...)
	fromDue := make([]time.Duration, len(measured))
	for i := range measured {
		fromDue[i] = measured[i] + max(late[i], 0)
	}
	for _, d := range [][]time.Duration{measured, late, fromDue} {
		sort.Slice(d, func(a, b int) bool { return d[a] < d[b] })
	}
	errors := map[string]int{}
	failedIn := map[string][]time.Duration{}
	withRetryInfo := 0
	for i := skip; i < total; i++ {
		if failures[i] != "" {
			errors[failures[i]]++
			failedIn[failures[i]] = append(failedIn[failures[i]], latencies[i])
			if retryInfo[i] {
				withRetryInfo++
			}
		}
	}
	errorP50 := map[string]float64{}
	for code, d := range failedIn {
		sort.Slice(d, func(a, b int) bool { return d[a] < d[b] })
		errorP50[code] = percentile(d, 50)
	}
	n := len(measured)
	out := result{
		Count:        n,
		Errors:       errors,
		ErrorP50Ms:   errorP50,
		RetryInfo:    withRetryInfo,
		OK:           len(ok),
		OKP50Ms:      percentile(ok, 50),
		OKP99Ms:      percentile(ok, 99),
		OKP999Ms:     percentile(ok, 99.9),
		AchievedRate: float64(n) / elapsed.Seconds(),
		P50Ms:        percentile(measured, 50),
		P90Ms:        percentile(measured, 90),
		P99Ms:        percentile(measured, 99),
		P999Ms:       percentile(measured, 99.9),
		MaxMs:        float64(measured[n-1]) / 1e6,
		DueP50Ms:     percentile(fromDue, 50),
		DueP99Ms:     percentile(fromDue, 99),
		DueP999Ms:    percentile(fromDue, 99.9),
		LateP99Ms:    percentile(late, 99),
		LateMaxMs:    float64(late[n-1]) / 1e6,
		ClientCPUUs:  cpu / float64(n) * 1e6,
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}
