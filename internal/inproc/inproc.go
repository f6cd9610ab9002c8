// Package inproc calls gRPC services in the same process, without a
// transport: a Conn is a grpc.ClientConnInterface, so any generated client
// (batchv1.NewBatchServiceClient(conn), ...) works on it, and a
// grpc.ServiceRegistrar, so the generated Register functions put services on
// it. Calls run the registered handlers directly, behind the Conn's
// interceptors, as a gRPC server would run them: the caller's outgoing
// metadata arrives as incoming metadata, headers and trailers reach the
// grpc.Header and grpc.Trailer call options, and streams are pairs of
// unbuffered channels.
//
// Messages are handed over, not encoded: the receiver gets a shallow copy
// of the sent message (its fields, sub-messages shared), which is what gRPC's
// rule that a sent message is not modified afterwards allows. This is how
// grpc-gateway's REST handlers reach the services with no gRPC round trip.
package inproc

import (
	"context"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Conn runs the services registered on it in process. Create it with New
// and register every service before the first call; after that it is safe
// for concurrent use.
type Conn struct {
	unary   grpc.UnaryServerInterceptor  // nil: none
	stream  grpc.StreamServerInterceptor // nil: none
	methods map[string]unaryMethod
	streams map[string]streamMethod
}

type unaryMethod struct {
	srv  any
	desc grpc.MethodDesc
}

type streamMethod struct {
	srv  any
	desc grpc.StreamDesc
}

var (
	_ grpc.ClientConnInterface = (*Conn)(nil)
	_ grpc.ServiceRegistrar    = (*Conn)(nil)
)

// New returns a Conn whose calls run behind the interceptors, outermost
// first.
func New(unary []grpc.UnaryServerInterceptor, stream []grpc.StreamServerInterceptor) *Conn {
	return &Conn{
		unary:   ChainUnary(unary),
		stream:  ChainStream(stream),
		methods: make(map[string]unaryMethod),
		streams: make(map[string]streamMethod),
	}
}

// RegisterService implements grpc.ServiceRegistrar.
func (c *Conn) RegisterService(desc *grpc.ServiceDesc, impl any) {
	for _, m := range desc.Methods {
		c.methods["/"+desc.ServiceName+"/"+m.MethodName] = unaryMethod{srv: impl, desc: m}
	}
	for _, s := range desc.Streams {
		c.streams["/"+desc.ServiceName+"/"+s.StreamName] = streamMethod{srv: impl, desc: s}
	}
}

// Invoke implements grpc.ClientConnInterface: it runs the unary method's
// handler with args and hands its answer over into reply.
func (c *Conn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	out, header, trailer, err := c.CallUnary(incoming(ctx), method, args)
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			*o.HeaderAddr = header
		case grpc.TrailerCallOption:
			*o.TrailerAddr = trailer
		}
	}
	if err != nil {
		return err
	}
	return transfer(reply, out)
}

// CallUnary runs the unary method's handler with a copy of args, behind
// the Conn's interceptors, as Invoke does, but for a caller that holds the
// call's incoming metadata already (runtime.AnnotateIncomingContext puts it
// on ctx, where the handler reads it) and takes the answer as the handler
// gave it: reply is the handler's own message, not a copy, and must not be
// modified. header and trailer are what the handler set (nil for none).
// An unknown method is an Unimplemented error.
func (c *Conn) CallUnary(ctx context.Context, method string, args any) (reply any, header, trailer metadata.MD, err error) {
	m, ok := c.methods[method]
	if !ok {
		return nil, nil, nil, status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	ts := &transportStream{method: method}
	ctx = grpc.NewContextWithServerTransportStream(ctx, ts)
	reply, err = m.desc.Handler(m.srv, ctx, func(v any) error { return transfer(v, args) }, c.unary)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return reply, ts.header, ts.trailer, err
}

// NewStream implements grpc.ClientConnInterface: it starts the stream's
// handler in its own goroutine, which ends when the handler returns. The
// caller must, as with any gRPC stream, cancel ctx or read the stream to
// its end.
func (c *Conn) NewStream(ctx context.Context, _ *grpc.StreamDesc, method string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	m, ok := c.streams[method]
	if !ok {
		return nil, status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	ctx, cancel := context.WithCancel(incoming(ctx))
	p := &pipe{
		ctx: ctx, cancel: cancel,
		// up holds one message, so that the request of a server-streaming
		// call is taken at once even when an interceptor fails the call
		// before its handler reads it (RecvMsg then reports the failure).
		up: make(chan any, 1), down: make(chan any),
		closed: make(chan struct{}), done: make(chan struct{}),
	}
	info := &grpc.StreamServerInfo{FullMethod: method, IsClientStream: m.desc.ClientStreams, IsServerStream: m.desc.ServerStreams}
	go func() {
		defer close(p.done)
		defer cancel()
		ss := (*serverStream)(p)
		if c.stream != nil {
			p.err = c.stream(m.srv, ss, info, m.desc.Handler)
		} else {
			p.err = m.desc.Handler(m.srv, ss)
		}
	}()
	return (*clientStream)(p), nil
}

// incoming turns the caller's outgoing metadata into the handler's
// incoming metadata.
func incoming(ctx context.Context) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	return metadata.NewIncomingContext(ctx, md)
}

// transfer sets dst, a message of src's type, to a shallow copy of src.
func transfer(dst, src any) error {
	d, ok := dst.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "inproc: %T is not a proto message", dst)
	}
	s, ok := src.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "inproc: %T is not a proto message", src)
	}
	dm, sm := d.ProtoReflect(), s.ProtoReflect()
	if dm.Descriptor().FullName() != sm.Descriptor().FullName() {
		return status.Errorf(codes.Internal, "inproc: cannot hand a %s over as a %s", sm.Descriptor().FullName(), dm.Descriptor().FullName())
	}
	proto.Reset(d)
	sm.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dm.Set(fd, v)
		return true
	})
	if u := sm.GetUnknown(); len(u) > 0 {
		dm.SetUnknown(u)
	}
	return nil
}

// transportStream collects a unary handler's headers and trailers.
type transportStream struct {
	method          string
	mu              sync.Mutex
	header, trailer metadata.MD
}

func (t *transportStream) Method() string { return t.method }

func (t *transportStream) SetHeader(md metadata.MD) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.header = metadata.Join(t.header, md)
	return nil
}

func (t *transportStream) SendHeader(md metadata.MD) error { return t.SetHeader(md) }

func (t *transportStream) SetTrailer(md metadata.MD) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.trailer = metadata.Join(t.trailer, md)
	return nil
}

// pipe connects a stream's handler (serverStream) to its caller
// (clientStream).
type pipe struct {
	ctx    context.Context
	cancel context.CancelFunc
	up     chan any      // caller to handler; one message buffered
	down   chan any      // handler to caller; unbuffered
	closed chan struct{} // closed by CloseSend
	once   sync.Once
	done   chan struct{} // closed when the handler returned
	err    error         // the handler's result, set before done closes

	mu              sync.Mutex
	header, trailer metadata.MD
}

// serverStream is the grpc.ServerStream side of a pipe.
type serverStream pipe

func (s *serverStream) Context() context.Context { return s.ctx }

func (s *serverStream) SetHeader(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.header = metadata.Join(s.header, md)
	return nil
}

func (s *serverStream) SendHeader(md metadata.MD) error { return s.SetHeader(md) }

func (s *serverStream) SetTrailer(md metadata.MD) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trailer = metadata.Join(s.trailer, md)
}

// SendMsg hands m to the caller, waiting until it takes it or the call
// ends.
func (s *serverStream) SendMsg(m any) error {
	select {
	case s.down <- m:
		return nil
	case <-s.ctx.Done():
		return status.FromContextError(s.ctx.Err()).Err()
	}
}

// RecvMsg takes the caller's next message into m: io.EOF after CloseSend.
func (s *serverStream) RecvMsg(m any) error {
	select {
	case v := <-s.up: // a message sent is received, even after a cancel
		return transfer(m, v)
	default:
	}
	select {
	case v := <-s.up:
		return transfer(m, v)
	case <-s.closed:
		select {
		case v := <-s.up: // sent before CloseSend
			return transfer(m, v)
		default:
			return io.EOF
		}
	case <-s.ctx.Done():
		return status.FromContextError(s.ctx.Err()).Err()
	}
}

// clientStream is the grpc.ClientStream side of a pipe.
type clientStream pipe

func (c *clientStream) Context() context.Context { return c.ctx }

// Header returns the headers the handler set so far.
func (c *clientStream) Header() (metadata.MD, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.header.Copy(), nil
}

// Trailer returns the handler's trailers once it has returned.
func (c *clientStream) Trailer() metadata.MD {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.trailer.Copy()
}

// CloseSend tells the handler that no more messages come.
func (c *clientStream) CloseSend() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// SendMsg hands m to the handler, waiting until it takes it. It returns
// io.EOF when the handler has returned, as gRPC does (RecvMsg then says
// why). A cancelled call ends the handler, so it ends SendMsg too.
func (c *clientStream) SendMsg(m any) error {
	select {
	case c.up <- m: // the first message always fits: see NewStream
		return nil
	default:
	}
	select {
	case c.up <- m:
		return nil
	case <-c.done:
		return io.EOF
	}
}

// RecvMsg takes the handler's next message into m: io.EOF after the
// handler returned OK, its error otherwise.
func (c *clientStream) RecvMsg(m any) error {
	select {
	case v := <-c.down:
		return transfer(m, v)
	case <-c.done:
		if c.err != nil {
			return c.err
		}
		return io.EOF
	}
}

// ChainUnary composes interceptors, outermost first, into one; nil for
// none.
func ChainUnary(ics []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	if len(ics) == 0 {
		return nil
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		next := handler
		for i := len(ics) - 1; i >= 0; i-- {
			ic, h := ics[i], next
			next = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, h) }
		}
		return next(ctx, req)
	}
}

// ChainStream composes stream interceptors, outermost first, into one; nil
// for none.
func ChainStream(ics []grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	if len(ics) == 0 {
		return nil
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		next := handler
		for i := len(ics) - 1; i >= 0; i-- {
			ic, h := ics[i], next
			next = func(srv any, ss grpc.ServerStream) error { return ic(srv, ss, info, h) }
		}
		return next(srv, ss)
	}
}
