package sscheck

import "slices"

// osarchEntry is one architecture of the clients' shared/osarch tables: the
// canonical name, the aliases ArchitectureId also accepts, and the
// personalities (by canonical name) a host of this architecture runs.
type osarchEntry struct {
	name          string
	aliases       []string
	personalities []string
}

type osarchTable []osarchEntry

// canonical maps any accepted spelling to the canonical name, as
// ArchitectureName(ArchitectureId(arch)) does.
func (t osarchTable) canonical(arch string) (string, bool) {
	for _, e := range t {
		if e.name == arch {
			return e.name, true
		}
	}
	for _, e := range t {
		if slices.Contains(e.aliases, arch) {
			return e.name, true
		}
	}
	return "", false
}

// isPersonality reports whether arch (canonical) is a personality of local.
func (t osarchTable) isPersonality(local, arch string) bool {
	for _, e := range t {
		if e.name == local {
			return slices.Contains(e.personalities, arch)
		}
	}
	return false
}

// lxdArches is canonical/lxd shared/osarch/architectures.go.
var lxdArches = osarchTable{
	{"i686", []string{"i386", "i586", "386", "x86", "generic_32"}, nil},
	{"x86_64", []string{"amd64", "generic_64"}, []string{"i686"}},
	{"armv6l", []string{"armel", "arm"}, nil},
	{"armv7l", []string{"armhf", "armhfp", "armv7a_hardfp", "armv7", "armv7a_vfpv3_hardfp"}, []string{"armv6l"}},
	{"armv8l", nil, []string{"armv6l", "armv7l"}},
	{"aarch64", []string{"arm64", "arm64_generic"}, []string{"armv6l", "armv7l", "armv8l"}},
	{"ppc", []string{"powerpc"}, nil},
	{"ppc64", []string{"powerpc64", "ppc64"}, []string{"ppc"}},
	{"ppc64le", []string{"ppc64el"}, nil},
	{"s390x", nil, nil},
	{"mips", []string{"mipsel", "mipsle"}, nil},
	{"mips64", []string{"mips64el", "mips64le"}, []string{"mips"}},
	{"riscv32", nil, nil},
	{"riscv64", nil, nil},
	{"loongarch64", []string{"loong64"}, nil},
}

// incusArches is lxc/incus shared/osarch/architectures.go: LXD's table plus
// the x86_64_v1..v4 aliases.
var incusArches = func() osarchTable {
	t := slices.Clone(lxdArches)
	for i := range t {
		if t[i].name == "x86_64" {
			t[i].aliases = append(slices.Clone(t[i].aliases), "x86_64_v1", "x86_64_v2", "x86_64_v3", "x86_64_v4")
		}
	}
	return t
}()
