// Command notecheck checks Consortium's signed notes and checkpoints with Go's own
// golang.org/x/mod/sumdb/note and sumdb/tlog, the reference implementations, so that the
// Python client library is tested against code it does not share.
//
// It reads one JSON request on stdin and writes one JSON answer on stdout; on a refusal it
// prints the error on stderr and exits 1. Requests:
//
//	{"cmd": "verify", "vkeys": [...], "note": "..."}       -> {"text", "verified", "unverified"}
//	{"cmd": "checkpoint", "vkeys": [...], "note": "..."}   -> {"origin", "size", "root"}
//	{"cmd": "sign", "skey": "...", "text": "..."}          -> {"note"}
//	{"cmd": "generate", "name": "..."}                     -> {"skey", "vkey"}
//	{"cmd": "keys", "skey": "...", "vkey": "..."}          -> {"name", "hash"} (both accepted, same key)
//	{"cmd": "format-tree", "size": N, "root": "<base64>"}  -> {"text"} (tlog.FormatTree)
//
// x/mod 0.7.0 (Debian's golang-golang-x-mod-dev) has no cosignature (0x04) support, so
// there is no cosignature command: cosignatures are checked against the spec's text only.
package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type request struct {
	Cmd   string   `json:"cmd"`
	Vkeys []string `json:"vkeys"`
	Note  string   `json:"note"`
	Skey  string   `json:"skey"`
	Vkey  string   `json:"vkey"`
	Text  string   `json:"text"`
	Name  string   `json:"name"`
	Size  int64    `json:"size"`
	Root  string   `json:"root"`
}

func main() {
	var req request
	dec := json.NewDecoder(os.Stdin)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(err)
	}
	answer, err := run(req)
	if err != nil {
		fail(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(answer); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func run(req request) (map[string]any, error) {
	switch req.Cmd {
	case "verify":
		n, err := open(req)
		if err != nil {
			return nil, err
		}
		return map[string]any{"text": n.Text, "verified": names(n.Sigs), "unverified": names(n.UnverifiedSigs)}, nil
	case "checkpoint":
		n, err := open(req)
		if err != nil {
			return nil, err
		}
		return checkpoint(n.Text)
	case "sign":
		signer, err := note.NewSigner(req.Skey)
		if err != nil {
			return nil, err
		}
		msg, err := note.Sign(&note.Note{Text: req.Text}, signer)
		if err != nil {
			return nil, err
		}
		return map[string]any{"note": string(msg)}, nil
	case "generate":
		skey, vkey, err := note.GenerateKey(rand.Reader, req.Name)
		if err != nil {
			return nil, err
		}
		return map[string]any{"skey": skey, "vkey": vkey}, nil
	case "keys":
		signer, err := note.NewSigner(req.Skey)
		if err != nil {
			return nil, err
		}
		verifier, err := note.NewVerifier(req.Vkey)
		if err != nil {
			return nil, err
		}
		// The pair is one key only if what the signer signs, the verifier accepts.
		msg, err := note.Sign(&note.Note{Text: "key check\n"}, signer)
		if err != nil {
			return nil, err
		}
		if _, err := note.Open(msg, note.VerifierList(verifier)); err != nil {
			return nil, err
		}
		return map[string]any{"name": verifier.Name(), "hash": fmt.Sprintf("%08x", verifier.KeyHash())}, nil
	case "format-tree":
		root, err := base64.StdEncoding.DecodeString(req.Root)
		if err != nil || len(root) != tlog.HashSize {
			return nil, errors.New("root must be base64 of 32 bytes")
		}
		var h tlog.Hash
		copy(h[:], root)
		return map[string]any{"text": string(tlog.FormatTree(tlog.Tree{N: req.Size, Hash: h}))}, nil
	}
	return nil, fmt.Errorf("unknown command %q", req.Cmd)
}

func open(req request) (*note.Note, error) {
	var verifiers []note.Verifier
	for _, vkey := range req.Vkeys {
		v, err := note.NewVerifier(vkey)
		if err != nil {
			return nil, err
		}
		verifiers = append(verifiers, v)
	}
	return note.Open([]byte(req.Note), note.VerifierList(verifiers...))
}

// checkpoint parses a tlog-checkpoint body. tlog.ParseTree only reads the go.sum database's
// own origin, so the generic form is read here, and tlog.ParseTree is also asked whenever
// the origin is that one.
func checkpoint(text string) (map[string]any, error) {
	if !strings.HasSuffix(text, "\n") {
		return nil, errors.New("checkpoint does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 || lines[0] == "" {
		return nil, errors.New("checkpoint has no origin, size and root")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return nil, errors.New("malformed tree size")
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return nil, errors.New("malformed root hash")
	}
	if lines[0] == "go.sum database tree" {
		tree, err := tlog.ParseTree([]byte(text))
		if err != nil {
			return nil, err
		}
		if tree.N != size || base64.StdEncoding.EncodeToString(tree.Hash[:]) != lines[2] {
			return nil, errors.New("tlog.ParseTree disagrees")
		}
	}
	return map[string]any{"origin": lines[0], "size": size, "root": lines[2], "extensions": lines[3:]}, nil
}

func names(sigs []note.Signature) []string {
	out := []string{}
	for _, s := range sigs {
		out = append(out, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
	}
	return out
}
