// The pinned NetworkPolicy enforcer for the kube tier's packet tests (not a program of netwarden's):
// `netwarden controlplane build` downloads this module through the Go module proxy (checked against
// go.sum), applies patches/*.patch and builds ./cmd into the cache. See README.md.
module netwarden.local/tools/knp

go 1.24

require sigs.k8s.io/kube-network-policies v0.8.0
