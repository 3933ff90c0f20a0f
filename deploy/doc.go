// Package deploy holds no code: this directory has the container image (Dockerfile), the
// docker compose files (compose/), the Kubernetes manifests (kubernetes/) and the Grafana
// dashboard (grafana/). Its tests keep those files true without docker or a cluster: see
// deploy_test.go and README.md.
package deploy
