// Package e2e runs OrderShop as it ships: Redis, PostgreSQL and the nine
// service images in Docker, one private network and stack per test, driven
// through the gateway as a client would, while the tests stop, kill and
// restart containers.
//
// The images are ordershop/*:local from scripts/build-local-images.sh; TestMain
// builds them when one is missing. ORDERSHOP_TAG runs (and builds) the
// images of another tag, Redis's and PostgreSQL's too, as the script does;
// E2E_IMAGE_<SERVICE> (e.g. E2E_IMAGE_CRM) runs another image of a service
// instead. Redis runs with the ACL of deploy/redis, each service as its user,
// the test as ops, with passwords of the stack's own; every service archives
// to the stack's PostgreSQL (ARCHIVE_URL). Without Docker the package is
// skipped, or fails with CI=true; -short skips it too.
package e2e

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"
)

var pool *dockertest.Pool

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipping the end-to-end tests in -short mode")
		os.Exit(0)
	}
	var err error
	if pool, err = dockertest.NewPool(""); err == nil {
		err = pool.Client.Ping()
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "e2e: Docker is unreachable, and CI=true:", err)
			os.Exit(1)
		}
		fmt.Println("e2e: skipping the end-to-end tests: Docker is unreachable:", err)
		os.Exit(0)
	}
	if err := ensureImages(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	sweep()
	os.Exit(m.Run())
}

// image is the image a container of the service runs.
func image(service string) string {
	if v := os.Getenv("E2E_IMAGE_" + strings.ToUpper(service)); v != "" {
		return v
	}
	tag := os.Getenv("ORDERSHOP_TAG")
	if tag == "" {
		tag = "local"
	}
	return "ordershop/" + service + ":" + tag
}

func missingImages() []string {
	var missing []string
	for _, s := range slices.Concat(stores, services) {
		if _, err := pool.Client.InspectImage(image(s)); err != nil {
			missing = append(missing, image(s))
		}
	}
	return missing
}

// ensureImages builds the local images if one is missing (CI builds them
// beforehand; nothing can be pulled here).
func ensureImages() error {
	missing := missingImages()
	if len(missing) == 0 {
		return nil
	}
	fmt.Fprintf(os.Stderr, "e2e: missing %s: running scripts/build-local-images.sh\n", strings.Join(missing, ", "))
	build := exec.Command("../../scripts/build-local-images.sh")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building the images: %w", err)
	}
	if missing := missingImages(); len(missing) > 0 {
		return fmt.Errorf("still missing after the build: %s", strings.Join(missing, ", "))
	}
	return nil
}

// Labels on every container and network, so that what a run left behind
// (a test binary killed by its timeout runs no cleanup) can be found.
const (
	labelRun  = "ordershop.e2e"
	labelPID  = "ordershop.e2e.pid"
	labelHost = "ordershop.e2e.host"
)

func labels() map[string]string {
	host, _ := os.Hostname()
	return map[string]string{labelRun: "1", labelPID: strconv.Itoa(os.Getpid()), labelHost: host}
}

// sweep removes the containers and networks of earlier runs on this host
// whose test process is gone; those of runs still going are left alone.
func sweep() {
	host, _ := os.Hostname()
	gone := func(l map[string]string) bool {
		pid, err := strconv.Atoi(l[labelPID])
		return l[labelHost] == host && err == nil && pid != os.Getpid() &&
			errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}
	cs, err := pool.Client.ListContainers(docker.ListContainersOptions{All: true, Filters: map[string][]string{"label": {labelRun}}})
	if err == nil {
		for _, c := range cs {
			if gone(c.Labels) {
				fmt.Fprintln(os.Stderr, "e2e: removing the leftover container", c.Names)
				pool.Client.RemoveContainer(docker.RemoveContainerOptions{ID: c.ID, Force: true, RemoveVolumes: true})
			}
		}
	}
	ns, err := pool.Client.FilteredListNetworks(docker.NetworkFilterOpts{"label": {labelRun: true}})
	if err == nil {
		for _, n := range ns {
			if gone(n.Labels) {
				fmt.Fprintln(os.Stderr, "e2e: removing the leftover network", n.Name)
				pool.Client.RemoveNetwork(n.ID)
			}
		}
	}
}
