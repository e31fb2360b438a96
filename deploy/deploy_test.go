// Package deploy_test renders the kustomizations of deploy/ offline, as
// kustomize build would, decodes every object strictly into the Kubernetes API
// types (a misspelled field fails, as the API server would refuse it), and
// checks what a cluster would otherwise only show at apply time or later: every
// container probed, limited and unprivileged, every Service selecting pods that
// have its ports, every ConfigMap and Secret that a pod needs present, each
// service connecting to Redis as its own user, on one node, as a cluster or
// through Sentinels to a primary and its replica, and to the PostgreSQL of
// the archive as the user and with the password it was made with.
package deploy_test

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// services are OrderShop's nine services: a Deployment and a Service each,
// each its own Redis user of redis/users.acl.
var services = []string{"customer", "product", "inventory", "order", "billing", "crm", "msg", "archive", "gateway"}

// adminPort is where every service's ADMIN_ADDR listens, /readyz and /healthz included.
const adminPort = 9000

func TestSingle(t *testing.T) {
	s := render(t, "overlays/single")
	s.check(t)
	for _, svc := range services {
		d := s.deployment(t, svc)
		if d == nil {
			continue
		}
		env := s.env(d.Spec.Template.Spec)
		if cluster, _ := strconv.ParseBool(env["REDIS_CLUSTER"]); cluster {
			t.Errorf("%s: REDIS_CLUSTER=%q on one node", svc, env["REDIS_CLUSTER"])
		}
		opt, err := redis.ParseURL(env["REDIS_URL"])
		if err != nil {
			t.Errorf("%s: REDIS_URL %q: %v", svc, env["REDIS_URL"], err)
			continue
		}
		if opt.Username != svc {
			t.Errorf("%s: Redis user %q", svc, opt.Username)
		}
		s.checkRedisAddr(t, svc, opt.Addr, 1)
	}
}

// TestCluster checks the overlay of a Redis Cluster of three masters, each
// with a replica: six nodes, each following as the ACL user replica and
// refusing writes without a replica in sync; a Job that joins all six with
// one replica per master; every service a cluster client of all six, as its
// own user, acknowledged once replicated.
func TestCluster(t *testing.T) {
	s := render(t, "overlays/cluster")
	s.check(t)
	const nodes = 6
	for _, svc := range services {
		d := s.deployment(t, svc)
		if d == nil {
			continue
		}
		env := s.env(d.Spec.Template.Spec)
		if env["REDIS_CLUSTER"] != "1" {
			t.Errorf("%s: REDIS_CLUSTER=%q, want 1", svc, env["REDIS_CLUSTER"])
		}
		opt, err := redis.ParseClusterURL(env["REDIS_URL"])
		if err != nil {
			t.Errorf("%s: REDIS_URL %q: %v", svc, env["REDIS_URL"], err)
			continue
		}
		if opt.Username != svc {
			t.Errorf("%s: Redis user %q", svc, opt.Username)
		}
		if len(opt.Addrs) != nodes {
			t.Errorf("%s: REDIS_URL names %d nodes, want the %d of the cluster: %v", svc, len(opt.Addrs), nodes, opt.Addrs)
		}
		for _, addr := range opt.Addrs {
			s.checkRedisAddr(t, svc, addr, nodes)
		}
		if env["REDIS_MIN_REPLICAS"] != "1" {
			t.Errorf("%s: REDIS_MIN_REPLICAS=%q, want 1: an append acknowledged before the replica has it", svc, env["REDIS_MIN_REPLICAS"])
		}
	}
	redis := s.statefulSets["redis"]
	if redis == nil {
		t.Fatal("no StatefulSet redis")
	}
	c := redis.Spec.Template.Spec.Containers[0]
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--cluster-enabled yes", "--appendonly yes", "--cluster-announce-hostname $(POD_NAME).redis", "--cluster-preferred-endpoint-type hostname",
		"--min-replicas-to-write 1", "--min-replicas-max-lag 10", "--masteruser replica"} {
		if !strings.Contains(args, want) {
			t.Errorf("redis runs %q, without %q", args, want)
		}
	}
	s.checkPassword(t, "redis: --masterauth", c, redisOptions(c.Args)["--masterauth"], "$(REDIS_PASSWORD_REPLICA)", "replica")
	if c := redis.Spec.Template.Spec.Containers[0]; c.Lifecycle == nil || c.Lifecycle.PostStart == nil {
		t.Error("redis: no postStart hook: a cluster restarted on new IPs would not find itself")
	}
	job := s.jobs["redis-cluster-create"]
	if job == nil {
		t.Fatal("no Job redis-cluster-create: the nodes would never form a cluster")
	}
	script := strings.Join(job.Spec.Template.Spec.Containers[0].Command, " ")
	for i := range ptrOr(redis.Spec.Replicas, 1) {
		if node := fmt.Sprintf("redis-%d.redis:6379", i); !strings.Contains(script, node) {
			t.Errorf("Job redis-cluster-create leaves out %s", node)
		}
		if peer := regexp.MustCompile(fmt.Sprintf(`\bredis-%d\b`, i)); !peer.MatchString(strings.Join(c.Lifecycle.PostStart.Exec.Command, " ")) {
			t.Errorf("redis: the postStart hook does not meet redis-%d", i)
		}
	}
	if !strings.Contains(script, "--cluster-replicas 1") {
		t.Error("Job redis-cluster-create gives the masters no replica (--cluster-replicas 1)")
	}
}

// TestHA checks the overlay of a primary, its replica and three Sentinels:
// redis-0 the primary, refusing writes without a replica in sync; redis-1
// following it as the ACL user replica; three Sentinels that monitor it under
// the name the services ask for, with a quorum of two, as the ACL user
// sentinel; and every service asking them, acknowledged once replicated.
func TestHA(t *testing.T) {
	s := render(t, "overlays/ha")
	s.check(t)
	st, sen := s.statefulSets["redis"], s.statefulSets["sentinel"]
	if st == nil || sen == nil || st.Spec.ServiceName != "redis" || sen.Spec.ServiceName != "sentinel" {
		t.Fatal("no StatefulSets redis and sentinel on their Services")
	}
	if got := ptrOr(st.Spec.Replicas, 1); got != 2 {
		t.Errorf("StatefulSet redis: %d replicas, want 2 (the primary and its replica)", got)
	}
	if got := ptrOr(sen.Spec.Replicas, 1); got != 3 {
		t.Errorf("StatefulSet sentinel: %d replicas, want 3", got)
	}
	for _, set := range []*appsv1.StatefulSet{st, sen} {
		if !apartOnNodes(set) {
			t.Errorf("StatefulSet %s: its pods may share a node (no required podAntiAffinity on kubernetes.io/hostname)", set.Name)
		}
		if svc := s.services[set.Name]; svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
			t.Errorf("Service %s: want headless, with the names of pods not ready yet (a Sentinel refuses a name it cannot resolve)", set.Name)
		}
	}
	// What each Redis pod runs, and as whom it follows.
	primary := st.Name + "-0." + st.Spec.ServiceName + " 6379"
	c := st.Spec.Template.Spec.Containers[0]
	for i := range ptrOr(st.Spec.Replicas, 1) {
		pod := fmt.Sprintf("%s-%d", st.Name, i)
		opts := redisOptions(run(t, pod, c.Command, c.Args, map[string]string{"POD_NAME": pod}))
		if got, want := opts["--replica-announce-ip"], pod+"."+st.Spec.ServiceName; got != want {
			t.Errorf("%s: --replica-announce-ip %q, want its DNS name %s", pod, got, want)
		}
		if opts["--masteruser"] != "replica" {
			t.Errorf("%s: --masteruser %q, want replica", pod, opts["--masteruser"])
		}
		s.checkPassword(t, pod+": --masterauth", c, opts["--masterauth"], "$(REDIS_PASSWORD_REPLICA)", "replica")
		if i == 0 {
			if _, ok := opts["--replicaof"]; ok {
				t.Errorf("%s: starts as a replica (--replicaof %s), want the primary", pod, opts["--replicaof"])
			}
			if opts["--min-replicas-to-write"] != "1" || opts["--min-replicas-max-lag"] == "" {
				t.Errorf("%s: --min-replicas-to-write %q, --min-replicas-max-lag %q: want 1 and a lag, or it acknowledges writes no replica has",
					pod, opts["--min-replicas-to-write"], opts["--min-replicas-max-lag"])
			}
		} else if opts["--replicaof"] != primary {
			t.Errorf("%s: --replicaof %q, want the primary %s", pod, opts["--replicaof"], primary)
		}
	}
	// What each Sentinel writes in its config at the first start.
	var addrs []string
	c = sen.Spec.Template.Spec.Containers[0]
	for i := range ptrOr(sen.Spec.Replicas, 1) {
		pod := fmt.Sprintf("%s-%d", sen.Name, i)
		addrs = append(addrs, pod+"."+sen.Spec.ServiceName+":26379")
		dir := t.TempDir()
		script := []string{c.Command[0], c.Command[1], strings.ReplaceAll(c.Command[2], "/data/", dir+"/")}
		run(t, pod, script, c.Args, map[string]string{"POD_NAME": pod, "REDIS_PASSWORD_SENTINEL": "$REDIS_PASSWORD_SENTINEL"})
		conf, err := os.ReadFile(filepath.Join(dir, "sentinel.conf"))
		if err != nil {
			t.Errorf("%s: wrote no sentinel.conf: %v", pod, err)
			continue
		}
		got := map[string]string{}
		for _, line := range strings.Split(string(conf), "\n") {
			if k, v, ok := strings.Cut(strings.TrimPrefix(line, "sentinel "), " "); ok {
				got[k] = v
			}
		}
		for k, want := range map[string]string{
			"port":               "26379",
			"monitor":            "ordershop " + primary + " 2",
			"auth-user":          "ordershop sentinel",
			"resolve-hostnames":  "yes",
			"announce-hostnames": "yes",
			"announce-ip":        pod + "." + sen.Spec.ServiceName,
		} {
			if got[k] != want {
				t.Errorf("%s: sentinel.conf: %s %q, want %q", pod, k, got[k], want)
			}
		}
		pass, _ := strings.CutPrefix(got["auth-pass"], "ordershop ")
		s.checkPassword(t, pod+": auth-pass", c, pass, "$REDIS_PASSWORD_SENTINEL", "sentinel")
	}
	if !slices.ContainsFunc(s.services["sentinel"].Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == 26379 }) {
		t.Error("Service sentinel: no port 26379")
	}
	for _, svc := range services {
		d := s.deployment(t, svc)
		if d == nil {
			continue
		}
		env := s.env(d.Spec.Template.Spec)
		if env["REDIS_SENTINEL_MASTER"] != "ordershop" || env["REDIS_SENTINEL_ADDRS"] != strings.Join(addrs, ",") {
			t.Errorf("%s: REDIS_SENTINEL_MASTER=%q REDIS_SENTINEL_ADDRS=%q, want ordershop at %s",
				svc, env["REDIS_SENTINEL_MASTER"], env["REDIS_SENTINEL_ADDRS"], strings.Join(addrs, ","))
		}
		if env["REDIS_MIN_REPLICAS"] != "1" {
			t.Errorf("%s: REDIS_MIN_REPLICAS=%q, want 1: an append acknowledged before the replica has it", svc, env["REDIS_MIN_REPLICAS"])
		}
		if cluster, _ := strconv.ParseBool(env["REDIS_CLUSTER"]); cluster {
			t.Errorf("%s: REDIS_CLUSTER=%q with Sentinels", svc, env["REDIS_CLUSTER"])
		}
		if opt, err := redis.ParseURL(env["REDIS_URL"]); err != nil || opt.Username != svc {
			t.Errorf("%s: REDIS_URL %q: want the user %s (%v)", svc, env["REDIS_URL"], svc, err)
		}
	}
}

// run runs a container's shell command as its pod would, in a shell here,
// with each exec shown instead of run, and returns what it would exec.
func run(t *testing.T, pod string, command, args []string, env map[string]string) []string {
	t.Helper()
	if len(command) < 3 || command[0] != "/bin/sh" || command[1] != "-c" {
		t.Fatalf("%s: command %q, want a /bin/sh -c script", pod, command)
	}
	script := regexp.MustCompile(`(?m)^(\s*)exec `).ReplaceAllString(command[2], "${1}echo ")
	argv := []string{"-c", script}
	for _, a := range slices.Concat(command[3:], args) {
		argv = append(argv, expand(a, env))
	}
	cmd := exec.Command("sh", argv...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: its command: %v: %s", pod, err, stderr.String())
	}
	return strings.Fields(string(out))
}

// redisOptions returns the options of a redis-server command line, each with
// its values: --replicaof redis-0.redis 6379 is "redis-0.redis 6379".
func redisOptions(argv []string) map[string]string {
	opts := map[string]string{}
	var opt string
	for _, a := range argv {
		if strings.HasPrefix(a, "--") {
			opt = a
			opts[opt] = ""
		} else if opt != "" {
			opts[opt] = strings.TrimSpace(opts[opt] + " " + a)
		}
	}
	return opts
}

// checkPassword checks that a password given as ref (a variable of the
// container, unexpanded) is the Secret's password of the users.acl user.
func (s *shop) checkPassword(t *testing.T, at string, c corev1.Container, got, ref, user string) {
	t.Helper()
	name := strings.Trim(ref, "$()")
	if got != ref {
		t.Errorf("%s: %q, want %s", at, got, ref)
		return
	}
	key := name
	if r := secretRef(c, name); r != nil {
		key = r.Key
	} else if !slices.ContainsFunc(c.EnvFrom, func(f corev1.EnvFromSource) bool {
		return f.SecretRef != nil && s.secrets[f.SecretRef.Name] != nil && secretData(s.secrets[f.SecretRef.Name])[name] != ""
	}) {
		t.Errorf("%s: %s is not from a Secret", at, name)
		return
	}
	acl, err := os.ReadFile(filepath.Join("redis", "users.acl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(acl), "\nuser "+user+" on >${"+key+"} ") {
		t.Errorf("%s: the Secret's %s, not the password of the user %s of users.acl", at, key, user)
	}
}

// apartOnNodes reports whether a StatefulSet's pods must each be on a node of
// their own.
func apartOnNodes(st *appsv1.StatefulSet) bool {
	a := st.Spec.Template.Spec.Affinity
	if a == nil || a.PodAntiAffinity == nil {
		return false
	}
	return slices.ContainsFunc(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution, func(term corev1.PodAffinityTerm) bool {
		return term.TopologyKey == "kubernetes.io/hostname" && term.LabelSelector != nil &&
			selects(term.LabelSelector.MatchLabels, st.Spec.Template.Labels)
	})
}

// TestOwnSecret renders the README's way of filling in the Redis passwords: an
// overlay of one's own, outside the repository, whose secretGenerator
// replaces the template. Nothing may be left on the placeholders.
func TestOwnSecret(t *testing.T) {
	dir := t.TempDir()
	overlay, err := filepath.Abs("overlays/single")
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, overlay)
	if err != nil {
		t.Fatal(err)
	}
	var env strings.Builder
	for _, u := range aclPasswords(t) {
		fmt.Fprintf(&env, "%s=0123456789abcdef%s\n", u, strings.ToLower(u[len("REDIS_PASSWORD_"):]))
	}
	write(t, filepath.Join(dir, "redis-passwords.env"), env.String())
	write(t, filepath.Join(dir, "kustomization.yaml"), `resources:
  - `+rel+`
secretGenerator:
  - name: redis-passwords
    behavior: replace
    envs:
      - redis-passwords.env
  - name: postgres
    behavior: replace
    literals:
      - POSTGRES_PASSWORD=0123456789abcdefpostgres
`)
	s := render(t, dir)
	s.check(t)
	for name, secret := range s.secrets {
		for k, v := range secretData(secret) {
			if v == "CHANGE-ME" {
				t.Errorf("Secret %s: %s is still the placeholder", name, k)
			}
		}
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// shop is one rendered kustomization, by kind and name.
type shop struct {
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	jobs         map[string]*batchv1.Job
	services     map[string]*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	budgets      map[string]*policyv1.PodDisruptionBudget
}

// render builds the kustomization in dir as kustomize build does, from the
// files on disk, and decodes each object strictly: a field the API does not
// have, or a field given twice, fails the test.
func render(t *testing.T, dir string) *shop {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	strict := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
	s := &shop{
		deployments: map[string]*appsv1.Deployment{}, statefulSets: map[string]*appsv1.StatefulSet{},
		jobs: map[string]*batchv1.Job{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		budgets: map[string]*policyv1.PodDisruptionBudget{},
	}
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		obj, _, err := strict.Decode(y, nil, nil)
		if err != nil {
			t.Errorf("%s: %v", r.CurId(), err)
			continue
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			s.deployments[o.Name] = o
		case *appsv1.StatefulSet:
			s.statefulSets[o.Name] = o
		case *batchv1.Job:
			s.jobs[o.Name] = o
		case *corev1.Service:
			s.services[o.Name] = o
		case *corev1.ConfigMap:
			s.configMaps[o.Name] = o
		case *corev1.Secret:
			s.secrets[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			s.budgets[o.Name] = o
		default:
			t.Errorf("%s: a kind these checks do not know", r.CurId())
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return s
}

// check checks what every rendering must have.
func (s *shop) check(t *testing.T) {
	t.Helper()
	if len(s.deployments) != len(services) {
		t.Errorf("%d Deployments, want one per service (%v)", len(s.deployments), services)
	}
	for _, svc := range services {
		d := s.deployment(t, svc)
		if d == nil {
			continue
		}
		pod := d.Spec.Template.Spec
		if want := "ordershop/" + svc + ":local"; pod.Containers[0].Image != want {
			t.Errorf("%s: image %s, want %s", svc, pod.Containers[0].Image, want)
		}
		s.checkPod(t, "Deployment "+svc, pod, true)
		c := pod.Containers[0]
		checkHTTPProbe(t, svc, c, "readiness", c.ReadinessProbe, "/readyz")
		checkHTTPProbe(t, svc, c, "liveness", c.LivenessProbe, "/healthz")
		if s.services[svc] == nil {
			t.Errorf("no Service %s", svc)
		}
		s.checkRedisUser(t, svc, d)
	}
	for name, d := range s.deployments {
		if d.Spec.Selector == nil || !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			t.Errorf("Deployment %s: its selector does not select its own pods", name)
		}
	}
	for name, st := range s.statefulSets {
		if st.Spec.Selector == nil || !selects(st.Spec.Selector.MatchLabels, st.Spec.Template.Labels) {
			t.Errorf("StatefulSet %s: its selector does not select its own pods", name)
		}
		s.checkPod(t, "StatefulSet "+name, st.Spec.Template.Spec, true)
		if len(st.Spec.VolumeClaimTemplates) == 0 {
			t.Errorf("StatefulSet %s: no volumeClaimTemplates, its data would die with its pod", name)
		}
	}
	for name, j := range s.jobs {
		s.checkPod(t, "Job "+name, j.Spec.Template.Spec, false)
	}
	if gw := s.services["gateway"]; gw != nil && !slices.ContainsFunc(gw.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == 5000 }) {
		t.Errorf("Service gateway: ports %v, without 5000", gw.Spec.Ports)
	}
	for name, svc := range s.services {
		s.checkService(t, name, svc)
	}
	s.checkBudgets(t)
	s.checkRedisPasswords(t)
	s.checkArchive(t)
}

// checkPod checks a pod template: each container with requests and limits,
// as a user other than root, on a read-only root, unable to gain privileges,
// with no capabilities; with readiness and liveness probes if it serves; and
// every ConfigMap, Secret and key it reads present.
func (s *shop) checkPod(t *testing.T, where string, pod corev1.PodSpec, serves bool) {
	t.Helper()
	if len(pod.Containers) == 0 {
		t.Errorf("%s: no containers", where)
	}
	for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
		at := where + ", container " + c.Name
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
				t.Errorf("%s: no %s request", at, r)
			}
			if q, ok := c.Resources.Limits[r]; !ok || q.IsZero() {
				t.Errorf("%s: no %s limit", at, r)
			}
		}
		if c.ImagePullPolicy != corev1.PullIfNotPresent {
			t.Errorf("%s: imagePullPolicy %q: the images are local, never pulled", at, c.ImagePullPolicy)
		}
		if serves && (c.ReadinessProbe == nil || c.LivenessProbe == nil) {
			t.Errorf("%s: needs a readiness and a liveness probe", at)
		}
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s: no securityContext", at)
			continue
		}
		nonRoot, uid := sc.RunAsNonRoot, sc.RunAsUser
		if ps := pod.SecurityContext; ps != nil {
			nonRoot, uid = orPod(nonRoot, ps.RunAsNonRoot), orPod(uid, ps.RunAsUser)
		}
		if nonRoot == nil || !*nonRoot || uid != nil && *uid == 0 {
			t.Errorf("%s: may run as root", at)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: root filesystem writable", at)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: may escalate privileges", at)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: capabilities %v, want all dropped", at, sc.Capabilities)
		}
		s.checkRefs(t, at, c)
	}
	for _, v := range pod.Volumes {
		if cm := v.ConfigMap; cm != nil && !isTrue(cm.Optional) && s.configMaps[cm.Name] == nil {
			t.Errorf("%s: volume %s: no ConfigMap %s", where, v.Name, cm.Name)
		}
		if sec := v.Secret; sec != nil && !isTrue(sec.Optional) && s.secrets[sec.SecretName] == nil {
			t.Errorf("%s: volume %s: no Secret %s", where, v.Name, sec.SecretName)
		}
	}
}

// checkRefs checks that the ConfigMaps, Secrets and keys a container's
// environment comes from exist (unless optional).
func (s *shop) checkRefs(t *testing.T, at string, c corev1.Container) {
	t.Helper()
	for _, from := range c.EnvFrom {
		if r := from.ConfigMapRef; r != nil && !isTrue(r.Optional) && s.configMaps[r.Name] == nil {
			t.Errorf("%s: envFrom: no ConfigMap %s", at, r.Name)
		}
		if r := from.SecretRef; r != nil && !isTrue(r.Optional) && s.secrets[r.Name] == nil {
			t.Errorf("%s: envFrom: no Secret %s", at, r.Name)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			continue
		}
		if r := e.ValueFrom.ConfigMapKeyRef; r != nil && !isTrue(r.Optional) {
			if cm := s.configMaps[r.Name]; cm == nil {
				t.Errorf("%s: %s: no ConfigMap %s", at, e.Name, r.Name)
			} else if _, ok := cm.Data[r.Key]; !ok {
				t.Errorf("%s: %s: ConfigMap %s has no %s", at, e.Name, r.Name, r.Key)
			}
		}
		if r := e.ValueFrom.SecretKeyRef; r != nil && !isTrue(r.Optional) {
			if sec := s.secrets[r.Name]; sec == nil {
				t.Errorf("%s: %s: no Secret %s", at, e.Name, r.Name)
			} else if _, ok := secretData(sec)[r.Key]; !ok {
				t.Errorf("%s: %s: Secret %s has no %s", at, e.Name, r.Name, r.Key)
			}
		}
	}
}

// checkHTTPProbe checks that a service's probe asks path on the admin port.
func checkHTTPProbe(t *testing.T, svc string, c corev1.Container, kind string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: no HTTP %s probe", svc, kind)
		return
	}
	if p.HTTPGet.Path != path || containerPort(c, p.HTTPGet.Port) != adminPort {
		t.Errorf("%s: %s probe asks %s on port %s, want %s on %d", svc, kind, p.HTTPGet.Path, p.HTTPGet.Port.String(), path, adminPort)
	}
}

// checkService checks that a Service selects the pods of a Deployment or
// StatefulSet and that those pods have every port it forwards to.
func (s *shop) checkService(t *testing.T, name string, svc *corev1.Service) {
	t.Helper()
	if len(svc.Spec.Selector) == 0 {
		t.Errorf("Service %s: no selector", name)
		return
	}
	pods := s.podsSelectedBy(svc.Spec.Selector)
	if len(pods) == 0 {
		t.Errorf("Service %s: selector %v matches no Deployment or StatefulSet", name, svc.Spec.Selector)
	}
	for _, pod := range pods {
		for _, p := range svc.Spec.Ports {
			target := p.TargetPort
			if target.IntVal == 0 && target.StrVal == "" {
				target = intstr.FromInt32(p.Port)
			}
			if !slices.ContainsFunc(pod.Containers, func(c corev1.Container) bool { return containerPort(c, target) != 0 }) {
				t.Errorf("Service %s: port %s: the pods it selects have no port %s", name, p.Name, target.String())
			}
		}
	}
}

// checkBudgets checks that every Deployment and StatefulSet has a
// PodDisruptionBudget, and that every budget covers some.
func (s *shop) checkBudgets(t *testing.T) {
	t.Helper()
	covered := func(labels map[string]string) bool {
		for _, b := range s.budgets {
			if b.Spec.Selector != nil && selects(b.Spec.Selector.MatchLabels, labels) {
				return true
			}
		}
		return false
	}
	for name, d := range s.deployments {
		if !covered(d.Spec.Template.Labels) {
			t.Errorf("Deployment %s: no PodDisruptionBudget", name)
		}
	}
	for name, st := range s.statefulSets {
		if !covered(st.Spec.Template.Labels) {
			t.Errorf("StatefulSet %s: no PodDisruptionBudget", name)
		}
	}
	for name, b := range s.budgets {
		if b.Spec.Selector == nil || len(b.Spec.Selector.MatchLabels) == 0 || len(s.podsSelectedBy(b.Spec.Selector.MatchLabels)) == 0 {
			t.Errorf("PodDisruptionBudget %s: selects no pods", name)
		}
	}
}

// checkRedisUser checks that a service's Redis password is the one of the
// user its REDIS_URL names, and that users.acl has that user.
func (s *shop) checkRedisUser(t *testing.T, svc string, d *appsv1.Deployment) {
	t.Helper()
	var key string
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "REDIS_PASSWORD" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			key = e.ValueFrom.SecretKeyRef.Key
		}
	}
	if want := "REDIS_PASSWORD_" + strings.ToUpper(svc); key != want {
		t.Errorf("%s: REDIS_PASSWORD from %q, want the Secret's %s", svc, key, want)
	}
	if !slices.Contains(aclPasswords(t), key) {
		t.Errorf("%s: users.acl has no user with the password ${%s}", svc, key)
	}
}

// checkRedisPasswords checks that the Redis containers get every password
// users.acl asks for: entrypoint.sh refuses to start without one.
func (s *shop) checkRedisPasswords(t *testing.T) {
	t.Helper()
	st := s.statefulSets["redis"]
	if st == nil {
		t.Error("no StatefulSet redis")
		return
	}
	env := s.env(st.Spec.Template.Spec)
	for _, k := range aclPasswords(t) {
		if _, ok := env[k]; !ok {
			t.Errorf("StatefulSet redis: no %s, which users.acl needs", k)
		}
	}
}

// checkArchive checks that StatefulSet postgres makes its cluster on a folder
// of its volume, with a user, database and password from the Secret, behind a
// Service on port 5432, and that every service's ARCHIVE_URL reaches it as that
// user, in that database, with that password (PGPASSWORD, from the same Secret
// key, as the URL has none).
func (s *shop) checkArchive(t *testing.T) {
	t.Helper()
	st, svc := s.statefulSets["postgres"], s.services["postgres"]
	if st == nil || svc == nil || st.Spec.ServiceName != "postgres" {
		t.Error("no StatefulSet postgres on a Service postgres")
		return
	}
	if got := ptrOr(st.Spec.Replicas, 1); got != 1 {
		t.Errorf("StatefulSet postgres: %d replicas, want 1", got)
	}
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == 5432 }) {
		t.Error("Service postgres: no port 5432")
	}
	pod := st.Spec.Template.Spec
	env := s.env(pod)
	user, db := env["POSTGRES_USER"], env["POSTGRES_DB"]
	if user == "" || db == "" {
		t.Errorf("StatefulSet postgres: POSTGRES_USER %q, POSTGRES_DB %q: both must be set", user, db)
	}
	password := secretRef(pod.Containers[0], "POSTGRES_PASSWORD")
	if password == nil {
		t.Error("StatefulSet postgres: POSTGRES_PASSWORD not from a Secret")
	}
	// The cluster in a folder of the volume: its root may hold lost+found,
	// which initdb refuses.
	var data string
	for _, m := range pod.Containers[0].VolumeMounts {
		if slices.ContainsFunc(st.Spec.VolumeClaimTemplates, func(c corev1.PersistentVolumeClaim) bool { return c.Name == m.Name }) {
			data = m.MountPath
		}
	}
	if pgdata := env["PGDATA"]; data == "" || !strings.HasPrefix(pgdata, strings.TrimSuffix(data, "/")+"/") {
		t.Errorf("StatefulSet postgres: PGDATA %q, want a folder inside its volume (mounted at %q)", pgdata, data)
	}
	for _, name := range services {
		d := s.deployment(t, name)
		if d == nil {
			continue
		}
		c := d.Spec.Template.Spec.Containers[0]
		raw := s.env(d.Spec.Template.Spec)["ARCHIVE_URL"]
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "postgres" {
			t.Errorf("%s: ARCHIVE_URL %q: not a postgres:// URL (%v)", name, raw, err)
			continue
		}
		if u.Host != "postgres:5432" || u.User.Username() != user || u.Path != "/"+db {
			t.Errorf("%s: ARCHIVE_URL %q, want user %s at postgres:5432, database %s", name, raw, user, db)
		}
		if _, ok := u.User.Password(); ok {
			t.Errorf("%s: ARCHIVE_URL %q carries a password: it belongs in the Secret", name, raw)
		}
		if got := secretRef(c, "PGPASSWORD"); password != nil && (got == nil || *got != *password) {
			t.Errorf("%s: PGPASSWORD from %v, want the Secret StatefulSet postgres was made with (%s %s)", name, got, password.Name, password.Key)
		}
	}
}

// secretRef returns where a container's variable comes from, if from a Secret.
func secretRef(c corev1.Container, name string) *corev1.SecretKeySelector {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			return e.ValueFrom.SecretKeyRef
		}
	}
	return nil
}

// checkRedisAddr checks that a service's Redis address is one of the nodes
// StatefulSet redis has: "redis" (one node) or "redis-<i>.redis", on a
// headless Service of that name with port 6379.
func (s *shop) checkRedisAddr(t *testing.T, svc, addr string, nodes int32) {
	t.Helper()
	st, headless := s.statefulSets["redis"], s.services["redis"]
	if st == nil || headless == nil || headless.Spec.ClusterIP != corev1.ClusterIPNone || st.Spec.ServiceName != "redis" {
		t.Errorf("no StatefulSet redis on a headless Service redis")
		return
	}
	if got := ptrOr(st.Spec.Replicas, 1); got != nodes {
		t.Errorf("StatefulSet redis: %d replicas, want %d", got, nodes)
	}
	var ok bool
	for i := range nodes {
		ok = ok || addr == fmt.Sprintf("redis-%d.redis:6379", i)
	}
	if !ok && !(nodes == 1 && addr == "redis:6379") {
		t.Errorf("%s: Redis at %s, not a pod of StatefulSet redis", svc, addr)
	}
	if !slices.ContainsFunc(headless.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == 6379 }) {
		t.Errorf("Service redis: no port 6379")
	}
}

// deployment returns the Deployment of a service, or fails the test.
func (s *shop) deployment(t *testing.T, svc string) *appsv1.Deployment {
	t.Helper()
	d := s.deployments[svc]
	if d == nil || len(d.Spec.Template.Spec.Containers) != 1 {
		t.Errorf("no Deployment %s with one container", svc)
		return nil
	}
	return d
}

// env returns the environment a pod's first container would get: envFrom
// first, then env, with $(VAR) references expanded as the kubelet does.
func (s *shop) env(pod corev1.PodSpec) map[string]string {
	c := pod.Containers[0]
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if r := from.ConfigMapRef; r != nil && s.configMaps[r.Name] != nil {
			for k, v := range s.configMaps[r.Name].Data {
				env[k] = v
			}
		}
		if r := from.SecretRef; r != nil && s.secrets[r.Name] != nil {
			for k, v := range secretData(s.secrets[r.Name]) {
				env[k] = v
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expand(e.Value, env)
		case e.ValueFrom.SecretKeyRef != nil && s.secrets[e.ValueFrom.SecretKeyRef.Name] != nil:
			env[e.Name] = secretData(s.secrets[e.ValueFrom.SecretKeyRef.Name])[e.ValueFrom.SecretKeyRef.Key]
		case e.ValueFrom.ConfigMapKeyRef != nil && s.configMaps[e.ValueFrom.ConfigMapKeyRef.Name] != nil:
			env[e.Name] = s.configMaps[e.ValueFrom.ConfigMapKeyRef.Name].Data[e.ValueFrom.ConfigMapKeyRef.Key]
		default:
			env[e.Name] = "(from the pod)"
		}
	}
	return env
}

// expand fills in the $(VAR) references of a container's env value, command
// or args from env, as the kubelet does; an unknown one stays as it is.
func expand(value string, env map[string]string) string {
	return envRef.ReplaceAllStringFunc(value, func(m string) string {
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// podsSelectedBy returns the pod templates of the Deployments and
// StatefulSets whose labels a selector matches.
func (s *shop) podsSelectedBy(selector map[string]string) []corev1.PodSpec {
	var pods []corev1.PodSpec
	for _, d := range s.deployments {
		if selects(selector, d.Spec.Template.Labels) {
			pods = append(pods, d.Spec.Template.Spec)
		}
	}
	for _, st := range s.statefulSets {
		if selects(selector, st.Spec.Template.Labels) {
			pods = append(pods, st.Spec.Template.Spec)
		}
	}
	return pods
}

// aclPasswords returns the password variables users.acl names, as
// entrypoint.sh fills them: REDIS_PASSWORD_OPS, REDIS_PASSWORD_GATEWAY, ...
func aclPasswords(t *testing.T) []string {
	t.Helper()
	acl, err := os.ReadFile(filepath.Join("redis", "users.acl"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range regexp.MustCompile(`\$\{(REDIS_PASSWORD_[A-Z_]+)\}`).FindAllStringSubmatch(string(acl), -1) {
		if !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	if len(names) == 0 {
		t.Fatal("users.acl names no passwords")
	}
	return names
}

// secretData returns a Secret's values, from data and stringData alike (the
// API server merges them; kustomize leaves them as written).
func secretData(s *corev1.Secret) map[string]string {
	out := map[string]string{}
	for k, v := range s.Data {
		out[k] = string(v)
	}
	for k, v := range s.StringData {
		out[k] = v
	}
	return out
}

// containerPort returns the number of a container's port given by name or
// number, or 0 if it has no such port.
func containerPort(c corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if p.Type == intstr.String && cp.Name == p.StrVal || p.Type == intstr.Int && cp.ContainerPort == p.IntVal {
			return cp.ContainerPort
		}
	}
	return 0
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

func isTrue(b *bool) bool { return b != nil && *b }

func ptrOr[T any](p *T, or T) T {
	if p == nil {
		return or
	}
	return *p
}

// orPod returns the container's setting if it has one, else the pod's.
func orPod[T any](container, pod *T) *T {
	if container != nil {
		return container
	}
	return pod
}
