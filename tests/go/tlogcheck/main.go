// Command tlogcheck checks the log's Merkle math against Go's golang.org/x/mod/sumdb/tlog,
// an implementation we did not write: it reads one JSON request on stdin, builds its own
// stored hashes from the leaf hashes, checks every claim with tlog and answers in JSON on
// stdout, with tlog's own proofs and tiles so the caller can compare them with its own.
//
// Built by tests/client/test_merkle_go.py with GO111MODULE=off and GOPATH pointing at
// Debian's golang-golang-x-mod-dev sources.
package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

type request struct {
	LeafHashes []string `json:"leaf_hashes"`
	Checks     []check  `json:"checks"`
}

type check struct {
	Kind    string   `json:"kind"` // root, inclusion, consistency, tiles
	Index   int64    `json:"index"`
	Size    int64    `json:"size"`
	OldSize int64    `json:"old_size"`
	Root    string   `json:"root"`
	OldRoot string   `json:"old_root"`
	Proof   []string `json:"proof"`
}

type answer struct {
	Error string            `json:"error"`
	Root  string            `json:"root,omitempty"`
	Proof []string          `json:"proof,omitempty"`
	Tiles map[string]string `json:"tiles,omitempty"`
	Order []string          `json:"order,omitempty"`
}

type response struct {
	StoredHashes []string `json:"stored_hashes"`
	Answers      []answer `json:"answers"`
}

func mustHash(s string) tlog.Hash {
	var h tlog.Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != tlog.HashSize {
		fmt.Fprintf(os.Stderr, "tlogcheck: not a hash: %q\n", s)
		os.Exit(2)
	}
	copy(h[:], b)
	return h
}

func hexes(hashes []tlog.Hash) []string {
	out := make([]string, len(hashes))
	for i, h := range hashes {
		out[i] = hex.EncodeToString(h[:])
	}
	return out
}

func proofOf(p []string) []tlog.Hash {
	out := make([]tlog.Hash, len(p))
	for i, s := range p {
		out[i] = mustHash(s)
	}
	return out
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// widest keeps each tile once, at its widest: some versions of NewTiles also list every
// intermediate partial width of a growing tile, where we list the tile at its new width.
func widest(tiles []tlog.Tile) []tlog.Tile {
	type key struct {
		L int
		N int64
	}
	var out []tlog.Tile
	seen := map[key]int{}
	for _, t := range tiles {
		k := key{t.L, t.N}
		if i, ok := seen[k]; ok {
			if t.W > out[i].W {
				out[i] = t
			}
			continue
		}
		seen[k] = len(out)
		out = append(out, t)
	}
	return out
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintf(os.Stderr, "tlogcheck: %v\n", err)
		os.Exit(2)
	}

	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, index := range indexes {
			if index >= int64(len(stored)) {
				return nil, fmt.Errorf("stored hash %d not yet written", index)
			}
			out[i] = stored[index]
		}
		return out, nil
	})
	for n, leaf := range req.LeafHashes {
		hashes, err := tlog.StoredHashesForRecordHash(int64(n), mustHash(leaf), reader)
		if err != nil {
			fmt.Fprintf(os.Stderr, "tlogcheck: %v\n", err)
			os.Exit(2)
		}
		stored = append(stored, hashes...)
	}

	resp := response{StoredHashes: hexes(stored)}
	for _, c := range req.Checks {
		var a answer
		switch c.Kind {
		case "root":
			root, err := tlog.TreeHash(c.Size, reader)
			a.Root, a.Error = hex.EncodeToString(root[:]), errorText(err)
		case "inclusion":
			err := tlog.CheckRecord(proofOf(c.Proof), c.Size, mustHash(c.Root), c.Index, mustHash(req.LeafHashes[c.Index]))
			a.Error = errorText(err)
			if proof, err := tlog.ProveRecord(c.Size, c.Index, reader); err == nil {
				a.Proof = hexes(proof)
			}
		case "consistency":
			err := tlog.CheckTree(proofOf(c.Proof), c.Size, mustHash(c.Root), c.OldSize, mustHash(c.OldRoot))
			a.Error = errorText(err)
			if proof, err := tlog.ProveTree(c.Size, c.OldSize, reader); err == nil {
				a.Proof = hexes(proof)
			}
		case "tiles":
			// sumdb/tlog writes the height into the path (tile/8/L/N); C2SP tlog-tiles
			// fixes the height at 8 and leaves it out.
			a.Tiles = map[string]string{}
			for _, t := range widest(tlog.NewTiles(8, c.OldSize, c.Size)) {
				data, err := tlog.ReadTileData(t, reader)
				if err != nil {
					a.Error = err.Error()
					break
				}
				path := strings.Replace(t.Path(), "tile/8/", "tile/", 1)
				if parsed, err := tlog.ParseTilePath(t.Path()); err != nil || parsed != t {
					a.Error = fmt.Sprintf("tlog does not parse its own path %s", t.Path())
				}
				a.Order = append(a.Order, path)
				a.Tiles[path] = hex.EncodeToString(data)
			}
		default:
			a.Error = fmt.Sprintf("unknown check %q", c.Kind)
		}
		resp.Answers = append(resp.Answers, a)
	}
	if err := json.NewEncoder(os.Stdout).Encode(resp); err != nil {
		os.Exit(2)
	}
}
