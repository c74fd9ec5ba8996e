// kind's own config loader (strict v1alpha4 decoding, defaulting, conversion) and validator (names,
// roles, port mappings: no duplicate address/port/protocol), exactly what `kind create cluster
// --config` runs before it touches a container runtime. pkg/internal is importable from inside the
// kind module only, so tests/support/kindconfig.py builds this in a copy of it.
//
// Usage: kindconfig <config.yaml> [field...]; exit 1 with kind's error when the config is refused,
// else one line per node with the fields asked for (name, role, image, ports), space-separated.
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"sigs.k8s.io/kind/pkg/internal/apis/config/encoding"
)

func main() {
	cfg, err := encoding.Load(os.Args[1])
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, n := range cfg.Nodes {
		var out []string
		for _, field := range os.Args[2:] {
			switch field {
			case "name":
				out = append(out, cfg.Name)
			case "role":
				out = append(out, string(n.Role))
			case "image":
				out = append(out, n.Image)
			case "ports":
				out = append(out, strconv.Itoa(len(n.ExtraPortMappings)))
			default:
				fmt.Fprintln(os.Stderr, "unknown field", field)
				os.Exit(2)
			}
		}
		fmt.Println(strings.Join(out, " "))
	}
}
