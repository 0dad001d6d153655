// goprobe: a small static Go program (standard library only) that exercises what the Go
// runtime and ordinary Linux programs take from the kernel and the machine: threads and
// futexes (goroutines, channels, sync), signal-based preemption, timers, the epoll network
// poller (TCP over loopback with net/http, Unix sockets, pipes), signals, fork/exec,
// /proc, eventfd, timerfd, signalfd, POSIX timers, memfd + shared mmap, SysV shared memory.
//
// It prints one line per check and, last, `goprobe: ok` or `goprobe: FAILED: names`.
// Built by guest/linux/thirdparty/build.sh with GOOS=linux GOARCH=riscv64 CGO_ENABLED=0.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

type check struct {
	name string
	fn   func() error
}

var checks = []check{
	{"goroutines", goroutines},
	{"preempt", preempt},
	{"timers", timers},
	{"http", httpLoopback},
	{"unix", unixSocket},
	{"pipe", pipe},
	{"signal", selfSignal},
	{"exec", execSelf},
	{"proc", procStatus},
	{"eventfd", eventfd},
	{"timerfd", timerfd},
	{"signalfd", signalfd},
	{"posixtimer", posixTimer},
	{"memfd", memfdShared},
	{"sysvshm", sysvShm},
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		fmt.Printf("child %d ok\n", os.Getpid())
		return
	}
	// Whatever hangs, say so and stop (needs working timers; the caller also has a timeout).
	watchdog := time.AfterFunc(120*time.Second, func() {
		fmt.Println("goprobe: FAILED: watchdog: still running after 120 s")
		os.Exit(2)
	})
	fmt.Printf("goprobe: %s %s/%s, GOMAXPROCS=%d\n", runtime.Version(), runtime.GOOS,
		runtime.GOARCH, runtime.GOMAXPROCS(0))
	var failed []string
	for _, c := range checks {
		start := time.Now()
		err := c.fn()
		ms := float64(time.Since(start).Microseconds()) / 1000
		if err != nil {
			failed = append(failed, c.name)
			fmt.Printf("goprobe: %-10s FAIL: %v (%.1f ms)\n", c.name, err, ms)
		} else {
			fmt.Printf("goprobe: %-10s ok (%.1f ms)\n", c.name, ms)
		}
	}
	watchdog.Stop()
	if len(failed) > 0 {
		fmt.Printf("goprobe: FAILED: %s\n", strings.Join(failed, " "))
		os.Exit(1)
	}
	fmt.Println("goprobe: ok")
}

// within runs fn, failing if it takes longer than d (a blocked check must not hang all).
func within(d time.Duration, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		return fmt.Errorf("no result after %v", d)
	}
}

// 200 goroutines in a pipeline of channels, plus a mutex-protected map and a WaitGroup.
func goroutines() error {
	const n = 200
	in := make(chan int)
	out := make(chan int, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[int]bool{}
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := range in {
				mu.Lock()
				seen[v] = true
				mu.Unlock()
				runtime.Gosched()
				out <- v * v
			}
		}()
	}
	go func() {
		for i := 0; i < 10000; i++ {
			in <- i
		}
		close(in)
	}()
	go func() { wg.Wait(); close(out) }()
	var sum int64
	for v := range out {
		sum += int64(v)
	}
	if want := int64(333283335000); sum != want {
		return fmt.Errorf("sum of squares %d, want %d", sum, want)
	}
	if len(seen) != 10000 {
		return fmt.Errorf("%d values seen, want 10000", len(seen))
	}
	return nil
}

// A goroutine spinning in a loop without calls can only be stopped by asynchronous
// preemption (sysmon sends SIGURG): with one CPU the main goroutine runs again only then.
func preempt() error {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	var stop int32
	var spins uint64
	done := make(chan struct{})
	go func() {
		n := uint64(0)
		for atomic.LoadInt32(&stop) == 0 {
			n++
		}
		spins = n
		close(done)
	}()
	time.Sleep(30 * time.Millisecond)
	atomic.StoreInt32(&stop, 1)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return errors.New("spinning goroutine never stopped")
	}
	if spins == 0 {
		return errors.New("spinning goroutine never ran")
	}
	return nil
}

func timers() error {
	start := time.Now()
	time.Sleep(20 * time.Millisecond)
	if d := time.Since(start); d < 20*time.Millisecond {
		return fmt.Errorf("Sleep(20ms) returned after %v", d)
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	start = time.Now()
	for i := 0; i < 5; i++ {
		select {
		case <-t.C:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("ticker: tick %d missing", i)
		}
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		return fmt.Errorf("5 ticks of 10ms in %v", d)
	}
	var fired int32
	timer := time.AfterFunc(time.Hour, func() { atomic.StoreInt32(&fired, 1) })
	if !timer.Stop() || atomic.LoadInt32(&fired) != 0 {
		return errors.New("AfterFunc(1h) fired or could not be stopped")
	}
	return nil
}

// An HTTP server and client on 127.0.0.1 inside the guest: 20 requests over keep-alive
// plus 8 concurrent ones.
func httpLoopback() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/sq", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		fmt.Fprintf(w, "%d", n*n)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(n int) error {
		resp, err := client.Get(fmt.Sprintf("http://%s/sq?n=%d", ln.Addr(), n))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if string(body) != strconv.Itoa(n*n) {
			return fmt.Errorf("GET /sq?n=%d: %q", n, body)
		}
		return nil
	}
	for i := 0; i < 20; i++ {
		if err := get(i); err != nil {
			return err
		}
	}
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func(i int) { errs <- get(100 + i) }(i)
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			return err
		}
	}
	return nil
}

// A Unix stream socket: an echo server and a client exchanging 64 KiB.
func unixSocket() error {
	path := "/tmp/goprobe.sock"
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	return within(10*time.Second, func() error {
		c, err := net.Dial("unix", path)
		if err != nil {
			return err
		}
		defer c.Close()
		msg := bytes.Repeat([]byte("unix-socket "), 64*1024/12)
		go func() { c.Write(msg); c.(*net.UnixConn).CloseWrite() }()
		got, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, msg) {
			return fmt.Errorf("echoed %d bytes, sent %d", len(got), len(msg))
		}
		return nil
	})
}

// 1 MiB through a pipe (more than its 64 KiB buffer: the writer blocks and is woken).
func pipe() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	go func() {
		buf := bytes.Repeat([]byte{0xa5}, 4096)
		for i := 0; i < 256; i++ {
			w.Write(buf)
		}
		w.Close()
	}()
	return within(10*time.Second, func() error {
		n, err := io.Copy(io.Discard, r)
		if err != nil {
			return err
		}
		if n != 1<<20 {
			return fmt.Errorf("read %d bytes, want %d", n, 1<<20)
		}
		return nil
	})
}

func selfSignal() error {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	defer signal.Stop(ch)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		return err
	}
	select {
	case s := <-ch:
		if s != syscall.SIGUSR1 {
			return fmt.Errorf("got %v", s)
		}
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("SIGUSR1 not delivered")
	}
}

// os/exec: clone(CLONE_VFORK|CLONE_VM) + execve of /proc/self/exe, output through a pipe.
func execSelf() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, "child")
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%s child: %v", exe, err)
	}
	want := fmt.Sprintf("child %d ok\n", cmd.Process.Pid)
	if string(out) != want {
		return fmt.Errorf("child said %q, want %q", out, want)
	}
	return nil
}

func procStatus() error {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return err
	}
	defer f.Close()
	fields := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	if fields["Pid"] != strconv.Itoa(os.Getpid()) {
		return fmt.Errorf("Pid: %q, getpid %d", fields["Pid"], os.Getpid())
	}
	if fields["Name"] != "goprobe" {
		return fmt.Errorf("Name: %q", fields["Name"])
	}
	if n, _ := strconv.Atoi(fields["Threads"]); n < 2 {
		return fmt.Errorf("Threads: %q (the Go runtime runs several)", fields["Threads"])
	}
	var keys []string
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if _, ok := fields["VmRSS"]; !ok {
		return fmt.Errorf("no VmRSS among %v", keys)
	}
	return nil
}

func errnoErr(what string, e syscall.Errno) error {
	return fmt.Errorf("%s: %v", what, e)
}

func readU64(fd int) (uint64, error) {
	var b [8]byte
	n, err := syscall.Read(fd, b[:])
	if err != nil {
		return 0, err
	}
	if n != 8 {
		return 0, fmt.Errorf("read %d bytes", n)
	}
	return *(*uint64)(unsafe.Pointer(&b[0])), nil
}

func eventfd() error {
	fd, _, e := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC, 0)
	if e != 0 {
		return errnoErr("eventfd2", e)
	}
	defer syscall.Close(int(fd))
	for _, add := range []uint64{3, 4} {
		b := (*[8]byte)(unsafe.Pointer(&add))[:]
		if _, err := syscall.Write(int(fd), b); err != nil {
			return err
		}
	}
	v, err := readU64(int(fd))
	if err != nil {
		return err
	}
	if v != 7 {
		return fmt.Errorf("counter %d, want 7", v)
	}
	return nil
}

// A one-shot 10 ms CLOCK_MONOTONIC timerfd, read (blocking) on a locked thread.
func timerfd() error {
	const sysTimerfdSettime = 86
	fd, _, e := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, 1 /* CLOCK_MONOTONIC */, syscall.O_CLOEXEC, 0)
	if e != 0 {
		return errnoErr("timerfd_create", e)
	}
	defer syscall.Close(int(fd))
	spec := [4]int64{0, 0, 0, 10e6} // it_interval {0, 0}, it_value {0 s, 10 ms}
	if _, _, e := syscall.Syscall6(sysTimerfdSettime, fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0); e != 0 {
		return errnoErr("timerfd_settime", e)
	}
	start := time.Now()
	n, err := readU64(int(fd))
	if err != nil {
		return err
	}
	if n < 1 {
		return fmt.Errorf("%d expirations", n)
	}
	if d := time.Since(start); d > 5*time.Second {
		return fmt.Errorf("10 ms timer read after %v", d)
	}
	return nil
}

// SIGUSR2 blocked on this (locked) thread, sent to the thread with tgkill, taken from a
// signalfd.
func signalfd() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR2) // a handler, in case it gets through anyway
	defer signal.Stop(ch)
	mask := uint64(1) << (syscall.SIGUSR2 - 1)
	var old uint64
	if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, 0 /* SIG_BLOCK */, uintptr(unsafe.Pointer(&mask)),
		uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
		return errnoErr("rt_sigprocmask", e)
	}
	defer syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, 2 /* SIG_SETMASK */, uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0)
	fd, _, e := syscall.Syscall6(syscall.SYS_SIGNALFD4, ^uintptr(0), uintptr(unsafe.Pointer(&mask)), 8,
		syscall.O_CLOEXEC, 0, 0)
	if e != 0 {
		return errnoErr("signalfd4", e)
	}
	defer syscall.Close(int(fd))
	if err := syscall.Tgkill(os.Getpid(), syscall.Gettid(), syscall.SIGUSR2); err != nil {
		return err
	}
	var info [128]byte // struct signalfd_siginfo
	n, err := syscall.Read(int(fd), info[:])
	if err != nil {
		return err
	}
	if signo := *(*uint32)(unsafe.Pointer(&info[0])); n != 128 || signo != uint32(syscall.SIGUSR2) {
		return fmt.Errorf("read %d bytes, ssi_signo %d", n, signo)
	}
	return nil
}

// timer_create(CLOCK_MONOTONIC, SIGEV_SIGNAL SIGUSR2), armed for 10 ms, caught through
// os/signal.
func posixTimer() error {
	const sysTimerSettime, sysTimerDelete = 110, 111
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR2)
	defer signal.Stop(ch)
	var sev [64]byte // struct sigevent: value (8), signo (4), notify (4), ...
	*(*int32)(unsafe.Pointer(&sev[8])) = int32(syscall.SIGUSR2)
	*(*int32)(unsafe.Pointer(&sev[12])) = 0 // SIGEV_SIGNAL
	var id int32
	if _, _, e := syscall.Syscall(syscall.SYS_TIMER_CREATE, 1, uintptr(unsafe.Pointer(&sev)),
		uintptr(unsafe.Pointer(&id))); e != 0 {
		return errnoErr("timer_create", e)
	}
	defer syscall.Syscall(sysTimerDelete, uintptr(id), 0, 0)
	spec := [4]int64{0, 0, 0, 10e6}
	if _, _, e := syscall.Syscall6(sysTimerSettime, uintptr(id), 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0); e != 0 {
		return errnoErr("timer_settime", e)
	}
	select {
	case <-ch:
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("timer signal not delivered")
	}
}

// memfd_create + two MAP_SHARED mappings of it: a write through one shows in the other.
func memfdShared() error {
	name := []byte("goprobe\x00")
	fd, _, e := syscall.Syscall(279 /* memfd_create */, uintptr(unsafe.Pointer(&name[0])), 1 /* MFD_CLOEXEC */, 0)
	if e != 0 {
		return errnoErr("memfd_create", e)
	}
	defer syscall.Close(int(fd))
	if err := syscall.Ftruncate(int(fd), 8192); err != nil {
		return err
	}
	a, err := syscall.Mmap(int(fd), 0, 8192, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return err
	}
	defer syscall.Munmap(a)
	b, err := syscall.Mmap(int(fd), 0, 8192, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return err
	}
	defer syscall.Munmap(b)
	copy(a[4096:], "shared page")
	if string(b[4096:4096+11]) != "shared page" {
		return fmt.Errorf("second mapping reads %q", b[4096:4096+11])
	}
	return nil
}

// SysV shared memory: shmget, two shmat attachments, shmctl(IPC_RMID), shmdt.
func sysvShm() error {
	const sysShmctl, sysShmat, sysShmdt = 195, 196, 197
	id, _, e := syscall.Syscall(syscall.SYS_SHMGET, 0 /* IPC_PRIVATE */, 4096, 01000|0600 /* IPC_CREAT */)
	if e != 0 {
		return errnoErr("shmget", e)
	}
	defer syscall.Syscall(sysShmctl, id, 0 /* IPC_RMID */, 0)
	var addrs [2]uintptr
	for i := range addrs {
		a, _, e := syscall.Syscall(sysShmat, id, 0, 0)
		if e != 0 {
			return errnoErr("shmat", e)
		}
		addrs[i] = a
		defer syscall.Syscall(sysShmdt, a, 0, 0)
	}
	if addrs[0] == addrs[1] {
		return errors.New("two attachments at one address")
	}
	p := (*uint64)(unsafe.Pointer(addrs[0]))
	q := (*uint64)(unsafe.Pointer(addrs[1]))
	*p = 0x0123456789abcdef
	if *q != 0x0123456789abcdef {
		return fmt.Errorf("second attachment reads %#x", *q)
	}
	return nil
}
