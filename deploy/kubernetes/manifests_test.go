// Package kubernetes_test checks the kustomize base in this directory
// against the Kubernetes API types and against the gateway's own flags, so
// that `go test ./...` catches a manifest that would not apply, or that
// would not start or probe the gateway it deploys.
package kubernetes_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/webhook"
)

// kustomization is the part of kustomize's Kustomization this base uses;
// strict decoding refuses any other field, so a new one is added here on
// purpose.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images,omitempty"`
}

// base is every object of the base, decoded strictly into its API type.
type base struct {
	kust       kustomization
	deployment *appsv1.Deployment
	service    *corev1.Service
	configMap  *corev1.ConfigMap
	secret     *corev1.Secret
	pdb        *policyv1.PodDisruptionBudget
	hpa        *autoscalingv2.HorizontalPodAutoscaler
	netpol     *networkingv1.NetworkPolicy
}

// kinds maps each apiVersion and kind the base may hold to a decoder into
// its typed object.
var kinds = map[string]func(b *base, data []byte) error{
	"apps/v1 Deployment":                     func(b *base, d []byte) error { return decodeInto(d, &b.deployment) },
	"v1 Service":                             func(b *base, d []byte) error { return decodeInto(d, &b.service) },
	"v1 ConfigMap":                           func(b *base, d []byte) error { return decodeInto(d, &b.configMap) },
	"v1 Secret":                              func(b *base, d []byte) error { return decodeInto(d, &b.secret) },
	"policy/v1 PodDisruptionBudget":          func(b *base, d []byte) error { return decodeInto(d, &b.pdb) },
	"autoscaling/v2 HorizontalPodAutoscaler": func(b *base, d []byte) error { return decodeInto(d, &b.hpa) },
	"networking.k8s.io/v1 NetworkPolicy":     func(b *base, d []byte) error { return decodeInto(d, &b.netpol) },
}

// decodeInto decodes data strictly (unknown or duplicate fields are
// errors) into a new T and stores it in *dst, which must still be nil: one
// object of each kind.
func decodeInto[T any](data []byte, dst **T) error {
	if *dst != nil {
		return fmt.Errorf("a second %T", *dst)
	}
	v := new(T)
	if err := yaml.UnmarshalStrict(data, v); err != nil {
		return err
	}
	*dst = v
	return nil
}

// load decodes kustomization.yaml and every resource it lists, and checks
// that it lists every manifest of the directory.
func load(t *testing.T) *base {
	t.Helper()
	var b base
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &b.kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if b.kust.APIVersion != "kustomize.config.k8s.io/v1beta1" || b.kust.Kind != "Kustomization" {
		t.Fatalf("kustomization.yaml is %s %s", b.kust.APIVersion, b.kust.Kind)
	}
	var files []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return f == "kustomization.yaml" })
	slices.Sort(files)
	listed := slices.Sorted(slices.Values(b.kust.Resources))
	if !slices.Equal(files, listed) || len(slices.Compact(slices.Clone(listed))) != len(listed) {
		t.Fatalf("kustomization.yaml lists %v; the directory holds %v", listed, files)
	}
	for _, f := range b.kust.Resources {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if docs := bytes.Count(data, []byte("\n---")); docs > 0 || bytes.HasPrefix(data, []byte("---")) {
			t.Fatalf("%s: one object a file, please", f)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(data, &tm); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		decode, ok := kinds[tm.APIVersion+" "+tm.Kind]
		if !ok {
			t.Fatalf("%s: %s %s is not a kind this test knows", f, tm.APIVersion, tm.Kind)
		}
		if err := decode(&b, data); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	for name, missing := range map[string]bool{
		"Deployment": b.deployment == nil, "Service": b.service == nil, "ConfigMap": b.configMap == nil, "Secret": b.secret == nil,
		"PodDisruptionBudget": b.pdb == nil, "HorizontalPodAutoscaler": b.hpa == nil, "NetworkPolicy": b.netpol == nil,
	} {
		if missing {
			t.Errorf("the base has no %s", name)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return &b
}

// gatewayContainer is the Deployment's one container.
func (b *base) gatewayContainer(t *testing.T) corev1.Container {
	t.Helper()
	cs := b.deployment.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "gateway" {
		t.Fatalf("want one container, gateway: %+v", cs)
	}
	return cs[0]
}

// gatewayConfig loads the gateway's configuration the way the pod does:
// the container's args, the ConfigMap as the environment, and the
// variables of env; secrets get well-formed stand-ins (the manifests hold
// placeholders), after checking that they name a key of the Secret.
func (b *base) gatewayConfig(t *testing.T) config.Config {
	t.Helper()
	c := b.gatewayContainer(t)
	if len(c.Command) != 0 {
		t.Errorf("command %q: the image's entrypoint is the gateway", c.Command)
	}
	environ := map[string]string{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil && from.ConfigMapRef.Name == b.configMap.Name:
			for k, v := range b.configMap.Data {
				environ[from.Prefix+k] = v
			}
		default:
			t.Errorf("envFrom %+v: not the ConfigMap %s", from, b.configMap.Name)
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			environ[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if _, ok := b.secret.StringData[ref.Key]; ref.Name != b.secret.Name || !ok {
				t.Errorf("env %s: secret %s key %s is not in secret.yaml", e.Name, ref.Name, ref.Key)
			}
			environ[e.Name] = standIn(e.Name)
		default:
			t.Errorf("env %s: a source this test does not know", e.Name)
		}
	}
	// The gateway ignores variables it has no flag for: a misspelt one (or
	// CLUSTER_NATS_URL before the gateway has -cluster-nats-url) would be
	// dropped without a word.
	known := gatewayVariables(t)
	for k := range environ {
		if !known[k] {
			t.Errorf("%s is not a variable of the gateway (-h lists them)", k)
		}
	}
	cfg, err := config.Load(c.Args, func(k string) (string, bool) { v, ok := environ[k]; return v, ok }, io.Discard)
	if err != nil {
		t.Fatalf("the gateway would not start with the manifests' configuration: %v", err)
	}
	return cfg
}

// standIn is a well-formed value for the secret variable name.
func standIn(name string) string {
	if name == "WEBHOOK_SECRET" {
		var raw [32]byte
		_, _ = rand.Read(raw[:])
		return webhook.SecretPrefix + base64.StdEncoding.EncodeToString(raw[:])
	}
	return "stand-in-for-" + name
}

// gatewayVariables are the environment variables the gateway reads, as
// its -h lists them.
func gatewayVariables(t *testing.T) map[string]bool {
	t.Helper()
	var help strings.Builder
	_, _ = config.Load([]string{"-h"}, nil, &help)
	vars := map[string]bool{}
	for _, m := range regexp.MustCompile(`\(\$([A-Z0-9_]+)\)`).FindAllStringSubmatch(help.String(), -1) {
		vars[m[1]] = true
	}
	if !vars["UPSTREAM_URL"] || !vars["SHUTDOWN_DELAY"] {
		t.Fatalf("no variables in the gateway's -h:\n%s", help.String())
	}
	return vars
}

// show prints what p points to, or "unset".
func show[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

// port is the port number of a listen address (":8080").
func port(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil || n == 0 {
		t.Fatalf("listen address %q: a fixed port, please", addr)
	}
	return int32(n)
}

// containerPort resolves a named or numbered port of c to its number.
func containerPort(t *testing.T, c corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	t.Fatalf("port %q is not a port of container %s", p.StrVal, c.Name)
	return 0
}

func TestManifestsDecodeStrictly(t *testing.T) {
	t.Parallel()
	b := load(t)
	podLabels := labels.Set(b.deployment.Spec.Template.Labels)
	selects := func(what string, sel *metav1.LabelSelector) {
		t.Helper()
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil || s.Empty() || !s.Matches(podLabels) {
			t.Errorf("%s: selector %v (%v) does not select the gateway pods %v", what, sel, err, podLabels)
		}
	}
	selects("Deployment", b.deployment.Spec.Selector)
	selects("PodDisruptionBudget", b.pdb.Spec.Selector)
	selects("NetworkPolicy", &b.netpol.Spec.PodSelector)
	if s := labels.SelectorFromSet(b.service.Spec.Selector); len(b.service.Spec.Selector) == 0 || !s.Matches(podLabels) {
		t.Errorf("Service selector %v does not select the gateway pods %v", b.service.Spec.Selector, podLabels)
	}
	if r := b.deployment.Spec.Replicas; r == nil || *r != 3 {
		t.Errorf("replicas %s, want 3", show(r))
	}
	ref := b.hpa.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != b.deployment.Name {
		t.Errorf("HPA scales %+v, not the Deployment %s", ref, b.deployment.Name)
	}
	if m := b.hpa.Spec.MinReplicas; m == nil || *m < 2 || *m > b.hpa.Spec.MaxReplicas {
		t.Errorf("HPA replicas %s..%d", show(m), b.hpa.Spec.MaxReplicas)
	}
	if b.pdb.Spec.MaxUnavailable == nil && b.pdb.Spec.MinAvailable == nil {
		t.Error("the PodDisruptionBudget sets no budget")
	}
	if len(b.kust.Images) != 1 || b.kust.Images[0].Name != b.gatewayContainer(t).Image {
		t.Errorf("kustomization images %+v do not name the container's image %q", b.kust.Images, b.gatewayContainer(t).Image)
	}
}

// TestManifestsMatchTheGateway: the configuration the pods get loads; the
// ports, probes and grace period fit it.
func TestManifestsMatchTheGateway(t *testing.T) {
	t.Parallel()
	b := load(t)
	cfg := b.gatewayConfig(t)
	c := b.gatewayContainer(t)

	// Container ports: what the gateway listens on.
	want := map[string]int32{"grpc": port(t, cfg.Server.GRPCAddr), "http": port(t, cfg.Server.HTTPAddr)}
	if cfg.Webhook.Addr != "" {
		want["webhook"] = port(t, cfg.Webhook.Addr)
	}
	got := map[string]int32{}
	for _, p := range c.Ports {
		got[p.Name] = p.ContainerPort
		if p.Protocol != corev1.ProtocolTCP {
			t.Errorf("container port %s: protocol %q", p.Name, p.Protocol)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("container ports %v, the gateway listens on %v", got, want)
	}

	// Probes: on the HTTP port, at the gateway's paths.
	httpPort := want["http"]
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"readiness", c.ReadinessProbe, "/readyz"},
		{"liveness", c.LivenessProbe, "/healthz"},
		{"startup", c.StartupProbe, "/healthz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe: want an HTTP GET of %s", p.name, p.path)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || containerPort(t, c, g.Port) != httpPort || (g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP) {
			t.Errorf("%s probe: %s %s port %s, want HTTP %s on %d", p.name, g.Scheme, g.Path, g.Port.String(), p.path, httpPort)
		}
	}

	// Shutdown: the readiness drain of the issue, within the grace period.
	if cfg.Server.ShutdownDelay != 5*time.Second {
		t.Errorf("shutdown delay %v, want 5s", cfg.Server.ShutdownDelay)
	}
	grace := b.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds
	if need := cfg.Server.ShutdownDelay + cfg.Server.ShutdownTimeout; grace == nil || time.Duration(*grace)*time.Second <= need {
		t.Errorf("terminationGracePeriodSeconds %s, want more than shutdown delay + timeout = %v", show(grace), need)
	}

	// The tokens file is where the Secret's tokens are mounted.
	if cfg.Auth.TokensFile != "" {
		b.checkTokensMount(t, c, cfg.Auth.TokensFile)
	}

	// Service: each port to the container port of the same name; gRPC as h2c.
	svcPorts := map[string]int32{}
	for _, p := range b.service.Spec.Ports {
		svcPorts[p.Name] = containerPort(t, c, p.TargetPort)
		wantApp := "http"
		if p.Name == "grpc" {
			wantApp = "kubernetes.io/h2c"
		}
		if p.AppProtocol == nil || *p.AppProtocol != wantApp {
			t.Errorf("Service port %s: appProtocol %s, want %s", p.Name, show(p.AppProtocol), wantApp)
		}
	}
	if fmt.Sprint(svcPorts) != fmt.Sprint(want) {
		t.Errorf("Service ports reach %v, the gateway listens on %v", svcPorts, want)
	}

	b.checkNetworkPolicy(t, c, want)
}

// checkTokensMount checks that path is a file of a read-only mount of the
// Secret's tokens key.
func (b *base) checkTokensMount(t *testing.T, c corev1.Container, path string) {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range b.deployment.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		v := vols[m.Name]
		if !ok || v.Secret == nil {
			continue
		}
		if v.Secret.SecretName != b.secret.Name || !m.ReadOnly {
			t.Errorf("tokens mount %s: secret %s, read-only %v", m.MountPath, v.Secret.SecretName, m.ReadOnly)
		}
		for _, it := range v.Secret.Items {
			if it.Path == rel {
				if _, ok := b.secret.StringData[it.Key]; !ok {
					t.Errorf("tokens: key %s is not in secret.yaml", it.Key)
				}
				return
			}
		}
		if len(v.Secret.Items) == 0 {
			if _, ok := b.secret.StringData[rel]; ok {
				return
			}
		}
	}
	t.Errorf("CLIENT_TOKENS_FILE %s is not a key of a mounted Secret", path)
}

// checkNetworkPolicy: the API ports only from pods of the cluster, the
// webhook port (when on) from anywhere, nothing else.
func (b *base) checkNetworkPolicy(t *testing.T, c corev1.Container, ports map[string]int32) {
	t.Helper()
	np := b.netpol.Spec
	if !slices.Equal(np.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("policy types %v, want Ingress", np.PolicyTypes)
	}
	open := map[int32]string{} // port to "cluster" or "anywhere"
	for i, r := range np.Ingress {
		from := "anywhere"
		if len(r.From) > 0 {
			from = "cluster"
			for _, p := range r.From {
				if p.IPBlock != nil || p.NamespaceSelector == nil {
					t.Errorf("ingress rule %d: peer %+v is not a namespace selector", i, p)
				}
			}
		}
		if len(r.Ports) == 0 {
			t.Errorf("ingress rule %d opens every port", i)
		}
		for _, p := range r.Ports {
			if p.Port == nil || p.EndPort != nil {
				t.Errorf("ingress rule %d: port %+v, want one port", i, p)
				continue
			}
			open[containerPort(t, c, *p.Port)] = from
		}
	}
	want := map[int32]string{ports["grpc"]: "cluster", ports["http"]: "cluster"}
	if p, ok := ports["webhook"]; ok {
		want[p] = "anywhere"
	}
	if fmt.Sprint(open) != fmt.Sprint(want) {
		t.Errorf("the NetworkPolicy opens %v, want %v", open, want)
	}
}

// TestPodSecurity: non-root (the image's numeric user), read-only root,
// no privilege escalation, no capabilities, the runtime's seccomp
// profile, requests and limits.
func TestPodSecurity(t *testing.T) {
	t.Parallel()
	b := load(t)
	pod := b.deployment.Spec.Template.Spec
	c := b.gatewayContainer(t)
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || sc == nil {
		t.Fatal("pod and container need a securityContext")
	}
	isTrue := func(p *bool) bool { return p != nil && *p }
	if !isTrue(psc.RunAsNonRoot) && !isTrue(sc.RunAsNonRoot) {
		t.Error("runAsNonRoot is not set")
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Error("readOnlyRootFilesystem is not set")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("capabilities %+v, want drop ALL", sc.Capabilities)
	}
	for _, s := range []*corev1.SeccompProfile{psc.SeccompProfile, sc.SeccompProfile} {
		if s != nil && s.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("seccomp %s, want RuntimeDefault", s.Type)
		}
	}
	if psc.SeccompProfile == nil && sc.SeccompProfile == nil {
		t.Error("no seccomp profile")
	}
	if isTrue(sc.Privileged) || pod.HostNetwork || pod.HostPID {
		t.Error("privileged or host namespaces")
	}
	// The user is the Dockerfile's numeric USER.
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^USER\s+(\d+)(?::(\d+))?\s*$`).FindAllSubmatch(df, -1)
	if len(m) == 0 {
		t.Fatal("the Dockerfile has no numeric USER")
	}
	uid, _ := strconv.ParseInt(string(m[len(m)-1][1]), 10, 64)
	if uid == 0 || psc.RunAsUser == nil || *psc.RunAsUser != uid {
		t.Errorf("runAsUser %s, the image runs as %d", show(psc.RunAsUser), uid)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[r]
		lim, hasLim := c.Resources.Limits[r]
		if !hasReq || !hasLim || req.Cmp(lim) > 0 {
			t.Errorf("%s: request %v, limit %v", r, req.String(), lim.String())
		}
	}
}
