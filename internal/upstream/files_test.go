package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// pattern is the bytes genReader repeats; its prime length keeps reads from
// lining up with it.
var pattern = func() []byte {
	p := make([]byte, 65521)
	x := uint32(2463534242)
	for i := range p {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		p[i] = byte(x)
	}
	return p
}()

// genReader produces n bytes of pattern, generated as they are read (never
// held), and counts what it produced. pause, when set, is called once when
// the count first reaches pauseAt.
type genReader struct {
	n, off   int64
	produced atomic.Int64
	pauseAt  int64
	pause    func()
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.off >= g.n {
		return 0, io.EOF
	}
	if g.pause != nil && g.off >= g.pauseAt {
		g.pause()
		g.pause = nil
	}
	if rest := g.n - g.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	n := 0
	for n < len(p) {
		n += copy(p[n:], pattern[(g.off+int64(n))%int64(len(pattern)):])
	}
	g.off += int64(n)
	g.produced.Store(g.off)
	return n, nil
}

// genCRC returns the CRC-32 of genReader's first n bytes.
func genCRC(t *testing.T, n int64) uint32 {
	t.Helper()
	h := crc32.NewIEEE()
	if _, err := io.Copy(h, &genReader{n: n}); err != nil {
		t.Fatal(err)
	}
	return h.Sum32()
}

const fileJSON = `{"id":"file_abc123","object":"file","bytes":120000,"created_at":1677610602,"filename":"mydata.jsonl","purpose":"batch","status":"uploaded"}`

var wantFile = &batchv1.File{
	Id: "file_abc123", Object: "file", Bytes: 120000, CreatedAt: 1677610602,
	Filename: "mydata.jsonl", Purpose: "batch", Status: proto.String("uploaded"),
}

func TestFileCallsRequestShape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		call       func(c *Client) (any, error)
		wantMethod string
		wantURI    string
		wantAccept string
		answer     string
		want       proto.Message
	}{
		{"GetFile", func(c *Client) (any, error) { return c.GetFile(context.Background(), "file_abc123") },
			http.MethodGet, "/p/v1/files/file_abc123", "application/json", fileJSON, wantFile},
		{"DeleteFile", func(c *Client) (any, error) { return c.DeleteFile(context.Background(), "file_abc123") },
			http.MethodDelete, "/p/v1/files/file_abc123", "application/json", `{"id":"file_abc123","object":"file","deleted":true}`,
			&batchv1.DeleteFileResponse{Id: "file_abc123", Deleted: true}},
		{"ListFiles", func(c *Client) (any, error) { return c.ListFiles(context.Background(), "", 0, "") },
			http.MethodGet, "/p/v1/files", "application/json", `{"object":"list","data":[` + fileJSON + `],"has_more":false}`,
			&batchv1.ListFilesResponse{Files: []*batchv1.File{wantFile}, FirstId: "file_abc123", LastId: "file_abc123"}},
		{"ListFiles with parameters", func(c *Client) (any, error) {
			return c.ListFiles(context.Background(), "file_x-1", 10000, "batch output&x=1")
		}, http.MethodGet, "/p/v1/files?after=file_x-1&limit=10000&purpose=batch+output%26x%3D1", "application/json",
			`{"object":"list","data":[],"first_id":null,"last_id":null,"has_more":false}`, &batchv1.ListFilesResponse{}},
		{"FileContent", func(c *Client) (any, error) {
			rc, err := c.FileContent(context.Background(), "file_abc123")
			if err != nil {
				return nil, err
			}
			defer rc.Close()
			return io.ReadAll(rc)
		}, http.MethodGet, "/p/v1/files/file_abc123/content", "application/binary", "{\"a\":1}\n{\"b\":2}\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
				switch {
				case r.Method != tt.wantMethod:
					t.Errorf("method = %q", r.Method)
				case r.RequestURI != tt.wantURI:
					t.Errorf("RequestURI = %q, want %q", r.RequestURI, tt.wantURI)
				case r.Header.Get("Accept") != tt.wantAccept:
					t.Errorf("Accept = %q", r.Header.Get("Accept"))
				case r.Header.Get("Authorization") != "Bearer "+testKey:
					t.Errorf("Authorization = %q", r.Header.Get("Authorization"))
				case r.ContentLength > 0:
					t.Errorf("a body was sent")
				}
				w.Header().Set("Content-Type", "text/plain") // not relied on
				io.WriteString(w, tt.answer)
			})
			c := newTestClient(t, srv.URL+"/p", nil)
			got, err := tt.call(c)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != nil {
				assertProtoEqual(t, got.(proto.Message), tt.want)
			} else if string(got.([]byte)) != tt.answer {
				t.Errorf("content = %q", got)
			}
			if count.Load() != 1 {
				t.Errorf("requests = %d", count.Load())
			}
		})
	}
}

func TestFileCallsRejectAnotherFile(t *testing.T) {
	t.Parallel()
	srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"id":"file_other","object":"file","deleted":true}`)
	})
	c := newTestClient(t, srv.URL, nil)
	if f, err := c.GetFile(context.Background(), "file_mine"); !errors.Is(err, ErrMalformedResponse) || f != nil {
		t.Errorf("GetFile = %v, %v; want ErrMalformedResponse", f, err)
	}
	if d, err := c.DeleteFile(context.Background(), "file_mine"); !errors.Is(err, ErrMalformedResponse) || d != nil {
		t.Errorf("DeleteFile = %v, %v; want ErrMalformedResponse", d, err)
	}
	if count.Load() != 2 {
		t.Errorf("requests = %d, want 2 (not retried)", count.Load())
	}
}

// uploadSeen is what the fake upstream of an upload saw.
type uploadSeen struct {
	contentType, transferEncoding string
	parts                         []string // form names, in order
	purpose, filename, fileType   string
	n                             int64
	crc                           uint32
	err                           error // reading the body
}

// uploadServer parses uploads as the upstream does, with r.MultipartReader,
// and sends what it saw to the returned channel before answering with a
// file whose bytes is the file part's length. after, when set, runs once
// the file part's first MiB arrived.
func uploadServer(t *testing.T, after func()) (string, *atomic.Int64, <-chan uploadSeen) {
	seen := make(chan uploadSeen, 4)
	srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
		s := uploadSeen{contentType: r.Header.Get("Content-Type"), transferEncoding: strings.Join(r.TransferEncoding, ",")}
		defer func() { seen <- s }()
		mr, err := r.MultipartReader()
		if err != nil {
			s.err = err
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				s.err = err
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			s.parts = append(s.parts, p.FormName())
			switch p.FormName() {
			case "purpose":
				b, _ := io.ReadAll(p)
				s.purpose = string(b)
			case "file":
				_, params, _ := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
				s.filename = params["filename"]
				s.fileType = p.Header.Get("Content-Type")
				h := crc32.NewIEEE()
				if after != nil {
					n, err := io.CopyN(h, p, 1<<20)
					s.n += n
					if err != nil {
						s.err = err
						w.WriteHeader(http.StatusBadRequest)
						return
					}
					after()
				}
				n, err := io.Copy(h, p)
				s.n += n
				s.crc = h.Sum32()
				if err != nil {
					s.err = err
					w.WriteHeader(http.StatusBadRequest)
					return
				}
			}
		}
		fmt.Fprintf(w, `{"id":"file_up","object":"file","bytes":%d,"created_at":1,"filename":"x","purpose":%q}`, s.n, s.purpose)
	})
	return srv.URL, count, seen
}

func TestUploadFilePartsArriveIntact(t *testing.T) {
	t.Parallel()
	const content = "{\"custom_id\":\"r1\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{}}\n"
	for _, filename := range []string{"input.jsonl", `my "data" \ ünï ☃.jsonl`, "a;b=c; filename=evil.txt"} {
		t.Run(filename, func(t *testing.T) {
			t.Parallel()
			base, count, seen := uploadServer(t, nil)
			c := newTestClient(t, base, nil)
			f, err := c.UploadFile(context.Background(), filename, "batch", strings.NewReader(content))
			if err != nil {
				t.Fatal(err)
			}
			assertProtoEqual(t, f, &batchv1.File{Id: "file_up", Object: "file", Bytes: int64(len(content)), CreatedAt: 1, Filename: "x", Purpose: "batch"})
			s := <-seen
			mt, _, _ := mime.ParseMediaType(s.contentType)
			switch {
			case s.err != nil:
				t.Errorf("server: %v", s.err)
			case mt != "multipart/form-data":
				t.Errorf("Content-Type = %q", s.contentType)
			case strings.Join(s.parts, ",") != "purpose,file":
				t.Errorf("parts = %v, want purpose then file", s.parts)
			case s.purpose != "batch":
				t.Errorf("purpose = %q", s.purpose)
			case s.filename != filename:
				t.Errorf("filename = %q, want %q", s.filename, filename)
			case s.fileType != "application/octet-stream":
				t.Errorf("file part Content-Type = %q", s.fileType)
			case s.n != int64(len(content)) || s.crc != crc32.ChecksumIEEE([]byte(content)):
				t.Errorf("file part: %d bytes, crc %x", s.n, s.crc)
			case s.transferEncoding != "chunked":
				t.Errorf("Transfer-Encoding = %q, want chunked (streamed)", s.transferEncoding)
			}
			if count.Load() != 1 {
				t.Errorf("requests = %d", count.Load())
			}
		})
	}
}

// TestUploadFileStreams50MB: a 50 MB upload goes through while its content
// is generated: the upstream gets the first MiB before the content is half
// produced (the generator waits for it), and the content is never far
// ahead of what the upstream received.
func TestUploadFileStreams50MB(t *testing.T) {
	t.Parallel()
	const size = 50 << 20
	started := make(chan struct{})
	var ahead atomic.Int64
	gen := &genReader{n: size, pauseAt: size / 2}
	gen.pause = func() {
		select {
		case <-started:
		case <-time.After(15 * time.Second):
			t.Error("the upstream got nothing before half the content was read: the upload is buffered")
		}
	}
	base, _, seen := uploadServer(t, func() {
		ahead.Store(gen.produced.Load() - 1<<20)
		close(started)
	})
	c := newTestClient(t, base, nil)
	f, err := c.UploadFile(context.Background(), "big.jsonl", "batch", gen)
	if err != nil {
		t.Fatal(err)
	}
	s := <-seen
	if s.err != nil || s.n != size || f.GetBytes() != size {
		t.Fatalf("server read %d bytes (%v), answer %d; want %d", s.n, s.err, f.GetBytes(), size)
	}
	if want := genCRC(t, size); s.crc != want {
		t.Errorf("crc %x, want %x", s.crc, want)
	}
	// Pipe, transport buffers and loopback socket buffers hold a few MiB.
	if a := ahead.Load(); a > 16<<20 {
		t.Errorf("content was %d bytes ahead of the upstream after its first MiB", a)
	}
}

// errReader returns n bytes, then err.
type errReader struct {
	n   int
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	if e.n == 0 {
		return 0, e.err
	}
	k := min(len(p), e.n)
	for i := range p[:k] {
		p[i] = 'x'
	}
	e.n -= k
	return k, nil
}

func TestUploadFileContentFails(t *testing.T) {
	t.Parallel()
	errDisk := errors.New("disk gone")
	for _, n := range []int{0, 100, 3 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			base, count, seen := uploadServer(t, nil)
			c := newTestClient(t, base, nil)
			f, err := c.UploadFile(context.Background(), "in.jsonl", "batch", &errReader{n: n, err: errDisk})
			if !errors.Is(err, errDisk) || f != nil {
				t.Fatalf("got %v, %v; want the content's error", f, err)
			}
			if o := Classify(err); o != (Outcome{Health: HealthUnknown}) {
				t.Errorf("Classify = %+v, want nothing applied and health unknown", o)
			}
			if count.Load() == 1 {
				if s := <-seen; s.err == nil {
					t.Errorf("the upstream read a complete body (%d bytes)", s.n)
				}
			}
			if count.Load() > 1 {
				t.Errorf("requests = %d", count.Load())
			}
		})
	}
}

func TestUploadFileOneAttempt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		status      int
		readBody    bool
		wantApplied bool
	}{
		{"500 after reading", 500, true, true},
		{"503 after reading", 503, true, true},
		{"429 after reading", 429, true, false},
		{"413 before reading", 413, false, false},
		{"401 before reading", 401, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
				if tt.readBody {
					_, _ = io.Copy(io.Discard, r.Body)
				}
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(tt.status)
				fmt.Fprintf(w, `{"error":{"message":"no %s","type":"t","code":"c"}}`, r.Header.Get("Authorization"))
			})
			c := newTestClient(t, srv.URL, nil)
			gen := &genReader{n: 8 << 20}
			_, err := c.UploadFile(context.Background(), "in.jsonl", "batch", gen)
			var ue *Error
			if !errors.As(err, &ue) || ue.HTTPStatus != tt.status {
				t.Fatalf("err = %v, want HTTP %d", err, tt.status)
			}
			if strings.Contains(err.Error(), testKey) || strings.Contains(ue.Message, testKey) {
				t.Errorf("API key leaked: %v / %q", err, ue.Message)
			}
			if n := count.Load(); n != 1 {
				t.Errorf("requests = %d, want exactly 1", n)
			}
			if got := Classify(err).MayHaveApplied; got != tt.wantApplied {
				t.Errorf("MayHaveApplied = %v, want %v", got, tt.wantApplied)
			}
			// UploadFile has stopped reading: the count no longer moves.
			n := gen.produced.Load()
			time.Sleep(20 * time.Millisecond)
			if gen.produced.Load() != n {
				t.Error("content is still read after UploadFile returned")
			}
		})
	}
}

func TestUploadFileHangUpAndRefused(t *testing.T) {
	t.Parallel()
	srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	})
	c := newTestClient(t, srv.URL, nil)
	_, err := c.UploadFile(context.Background(), "in.jsonl", "batch", strings.NewReader("x\n"))
	if !errors.Is(err, ErrUnreachable) || !Classify(err).MayHaveApplied {
		t.Errorf("hang up: err = %v (%+v), want ErrUnreachable that may have applied", err, Classify(err))
	}
	if count.Load() != 1 {
		t.Errorf("requests = %d", count.Load())
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c = newTestClient(t, "http://"+addr, nil)
	_, err = c.UploadFile(context.Background(), "in.jsonl", "batch", strings.NewReader("x\n"))
	if !errors.Is(err, ErrUnreachable) || Classify(err).MayHaveApplied {
		t.Errorf("refused: err = %v (%+v), want ErrUnreachable that cannot have applied", err, Classify(err))
	}
	if s := c.Stats(); s.Requests != 1 || s.Retries != 0 {
		t.Errorf("Stats = %+v", s)
	}
}

func TestUploadFileCanceledMidway(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, _, _ := uploadServer(t, nil)
	gen := &genReader{n: 1 << 40, pauseAt: 4 << 20, pause: cancel}
	c := newTestClient(t, base, nil)
	done := make(chan error, 1)
	go func() {
		_, err := c.UploadFile(ctx, "in.jsonl", "batch", gen)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("UploadFile did not return after its context was canceled")
	}
	n := gen.produced.Load()
	time.Sleep(20 * time.Millisecond)
	if gen.produced.Load() != n {
		t.Error("content is still read after UploadFile returned")
	}
}

func TestUploadFileInvalidFilename(t *testing.T) {
	t.Parallel()
	srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) { io.WriteString(w, fileJSON) })
	c := newTestClient(t, srv.URL, nil)
	for _, name := range []string{"", "a\r\nContent-Type: text/html", "a\x00.jsonl", "a\x7f", "a\xff.jsonl", "tab\t.jsonl"} {
		_, err := c.UploadFile(context.Background(), name, "batch", strings.NewReader("x"))
		if !errors.Is(err, ErrInvalidFilename) {
			t.Errorf("filename %q: err = %v, want ErrInvalidFilename", name, err)
		}
		if o := Classify(err); !o.Permanent || o.MayHaveApplied || o.Health != HealthUnknown {
			t.Errorf("Classify = %+v", o)
		}
		if len(name) > 2 && strings.Contains(err.Error(), name) {
			t.Errorf("error repeats the filename: %v", err)
		}
	}
	if _, err := c.UploadFile(context.Background(), "in.jsonl", "batch", nil); err == nil || Classify(err).MayHaveApplied {
		t.Errorf("nil content: err = %v", err)
	}
	if count.Load() != 0 {
		t.Errorf("requests = %d", count.Load())
	}
}

// contentServer serves n bytes of pattern as a file's content, in flushed
// chunks of chunk bytes with delay between them, and reports on done when
// the handler returns.
func contentServer(t *testing.T, n int64, chunk int, delay time.Duration) (string, *atomic.Int64, <-chan struct{}) {
	done := make(chan struct{}, 8)
	srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
		defer func() { done <- struct{}{} }()
		if n >= 0 {
			w.Header().Set("Content-Length", fmt.Sprint(n))
		}
		rc := http.NewResponseController(w)
		if err := rc.Flush(); err != nil { // the headers at once
			return
		}
		g := &genReader{n: n}
		if n < 0 {
			g.n = 1 << 50 // endless
		}
		buf := make([]byte, chunk)
		for {
			k, err := g.Read(buf)
			if err != nil {
				return
			}
			if _, err := w.Write(buf[:k]); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			if delay > 0 {
				select {
				case <-time.After(delay):
				case <-r.Context().Done():
					return
				}
			}
		}
	})
	return srv.URL, count, done
}

// TestFileContentStreamsPastLimits: a body much larger than MaxBodyBytes,
// sent more slowly than AttemptTimeout, arrives whole.
func TestFileContentStreamsPastLimits(t *testing.T) {
	t.Parallel()
	const size = 24 << 20
	const attemptTimeout = 300 * time.Millisecond
	base, count, _ := contentServer(t, size, 1<<20, 40*time.Millisecond) // 24 chunks: about a second
	c := newTestClient(t, base, func(c *Config) {
		c.MaxBodyBytes = 1024
		c.AttemptTimeout = attemptTimeout
	})
	start := time.Now()
	rc, err := c.FileContent(context.Background(), "file_out")
	if err != nil {
		t.Fatal(err)
	}
	h := crc32.NewIEEE()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatalf("after %d bytes: %v", n, err)
	}
	if err := rc.Close(); err != nil {
		t.Error(err)
	}
	if n != size || h.Sum32() != genCRC(t, size) {
		t.Errorf("read %d bytes, crc %x", n, h.Sum32())
	}
	if el := time.Since(start); el < 2*attemptTimeout {
		t.Errorf("the download took %v: not longer than AttemptTimeout, the test proves nothing", el)
	}
	if count.Load() != 1 {
		t.Errorf("requests = %d", count.Load())
	}
}

func TestFileContentRetriesUntilHeaders(t *testing.T) {
	t.Parallel()
	t.Run("5xx then 200", func(t *testing.T) {
		t.Parallel()
		srv, count := countingServer(t, func(n int64, w http.ResponseWriter, _ *http.Request) {
			if n < 3 {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			io.WriteString(w, "line\n")
		})
		c := newTestClient(t, srv.URL, nil)
		rc, err := c.FileContent(context.Background(), "file_out")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if b, err := io.ReadAll(rc); err != nil || string(b) != "line\n" {
			t.Errorf("content = %q, %v", b, err)
		}
		if count.Load() != 3 {
			t.Errorf("requests = %d, want 3", count.Load())
		}
	})
	t.Run("slow headers then fast", func(t *testing.T) {
		t.Parallel()
		srv, count := countingServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
				return
			}
			io.WriteString(w, "ok")
		})
		c := newTestClient(t, srv.URL, func(c *Config) { c.AttemptTimeout = 250 * time.Millisecond })
		rc, err := c.FileContent(context.Background(), "file_out")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if b, err := io.ReadAll(rc); err != nil || string(b) != "ok" {
			t.Errorf("content = %q, %v", b, err)
		}
		if count.Load() != 2 {
			t.Errorf("requests = %d, want 2", count.Load())
		}
	})
	t.Run("headers never come", func(t *testing.T) {
		t.Parallel()
		srv, count := countingServer(t, func(_ int64, _ http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		})
		c := newTestClient(t, srv.URL, func(c *Config) { c.AttemptTimeout = 30 * time.Millisecond })
		rc, err := c.FileContent(context.Background(), "file_out")
		if !errors.Is(err, ErrTimeout) || rc != nil {
			t.Errorf("got %v, %v; want ErrTimeout", rc, err)
		}
		if count.Load() != DefaultMaxAttempts {
			t.Errorf("requests = %d", count.Load())
		}
	})
	t.Run("404 not retried", func(t *testing.T) {
		t.Parallel()
		srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"type":"not_found_error","code":"file_not_found"}}`)
		})
		c := newTestClient(t, srv.URL, nil)
		_, err := c.FileContent(context.Background(), "file_out")
		var ue *Error
		if !errors.As(err, &ue) || ue.HTTPStatus != 404 || ue.Code != "file_not_found" {
			t.Errorf("err = %v, want the 404", err)
		}
		if count.Load() != 1 {
			t.Errorf("requests = %d", count.Load())
		}
	})
}

func TestFileContentCanceledMidBody(t *testing.T) {
	t.Parallel()
	base, _, handlerDone := contentServer(t, -1, 32<<10, time.Millisecond)
	c := newTestClient(t, base, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc, err := c.FileContent(ctx, "file_out")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, 1<<20); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = io.Copy(io.Discard, rc)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Read after cancel: %v, want context.Canceled", err)
	}
	select {
	case <-handlerDone:
	case <-time.After(10 * time.Second):
		t.Error("the upstream is still sending after the cancel")
	}
}

func TestFileContentCloseReleases(t *testing.T) {
	t.Parallel()
	base, _, handlerDone := contentServer(t, -1, 32<<10, time.Millisecond)
	c := newTestClient(t, base, nil)
	rc, err := c.FileContent(context.Background(), "file_out")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf[:1000], pattern[:1000]) {
		t.Error("content differs")
	}
	if err := rc.Close(); err != nil {
		t.Error(err)
	}
	if err := rc.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := rc.Read(buf); err == nil || errors.Is(err, ErrUnreachable) {
		t.Errorf("Read after Close = %v", err)
	}
	select {
	case <-handlerDone:
	case <-time.After(10 * time.Second):
		t.Error("the upstream is still sending after Close")
	}
}

func TestFileContentBrokenMidBody(t *testing.T) {
	t.Parallel()
	srv, _ := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 5000))
		conn.Close()
	})
	c := newTestClient(t, srv.URL, nil)
	rc, err := c.FileContent(context.Background(), "file_out")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, rc)
	if n != 5000 || !errors.Is(err, ErrUnreachable) {
		t.Fatalf("read %d bytes, err %v; want 5000 and ErrUnreachable", n, err)
	}
	if o := Classify(err); !o.Retryable || o.Health != HealthBad {
		t.Errorf("Classify = %+v, want a transport failure", o)
	}
	if strings.Contains(err.Error(), testKey) {
		t.Errorf("API key leaked: %v", err)
	}
}
