package auth

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/icholy/digest"
)

// parseCredentials reads an Authorization value as
// digest.ParseCredentials does (the same grammar, the same results and
// the same refusals: TestParseCredentialsAsLibrary and
// FuzzParseCredentials compare them), without its reader and its
// byte-by-byte strings: a quoted value of plain ASCII is a slice of v.
// Parameters are comma-separated key=value, keys and bare values made of
// letters, digits and '-', values quoted with backslash escapes; only
// spaces count as white space; keys are matched exactly.
func parseCredentials(v string) (*digest.Credentials, error) {
	s, ok := digest.CutPrefix(v)
	if !ok {
		return nil, errors.New("digest: invalid credentials prefix")
	}
	var c digest.Credentials
	for i, first := 0, true; ; first = false {
		i = skipSpaces(s, i)
		if i == len(s) {
			break
		}
		if !first {
			if s[i] != ',' {
				return nil, errBadParams
			}
			i = skipSpaces(s, i+1)
		}
		k := i
		i = skipIdent(s, i)
		key := s[k:i]
		i = skipSpaces(s, i)
		if i == len(s) || s[i] != '=' {
			return nil, errBadParams
		}
		i = skipSpaces(s, i+1)
		var val string
		if i < len(s) && s[i] == '"' {
			var err error
			if val, i, err = unquote(s, i+1); err != nil {
				return nil, err
			}
		} else {
			v := i
			i = skipIdent(s, i)
			val = s[v:i]
		}
		switch key {
		case "username":
			c.Username = val
		case "realm":
			c.Realm = val
		case "nonce":
			c.Nonce = val
		case "uri":
			c.URI = val
		case "response":
			c.Response = val
		case "algorithm":
			c.Algorithm = val
		case "cnonce":
			c.Cnonce = val
		case "opaque":
			c.Opaque = val
		case "qop":
			c.QOP = val
		case "nc":
			nc, err := strconv.ParseInt(val, 16, 32)
			if err != nil {
				return nil, errors.New("digest: invalid nc")
			}
			c.Nc = int(nc)
		case "userhash":
			c.Userhash = strings.ToLower(val) == "true"
		}
	}
	return &c, nil
}

var errBadParams = errors.New("digest: invalid credentials parameters")

func skipSpaces(s string, i int) int {
	for i < len(s) && s[i] == ' ' {
		i++
	}
	return i
}

func skipIdent(s string, i int) int {
	for i < len(s) {
		b := s[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-') {
			break
		}
		i++
	}
	return i
}

// unquote reads a quoted string whose opening quote is before s[i]: its
// value and the index after the closing quote. Invalid UTF-8 reads as
// U+FFFD, as a bufio.Reader's ReadRune does.
func unquote(s string, i int) (string, int, error) {
	j := i
	for j < len(s) && s[j] != '"' && s[j] != '\\' && s[j] < utf8.RuneSelf {
		j++
	}
	if j < len(s) && s[j] == '"' {
		return s[i:j], j + 1, nil // plain ASCII
	}
	var b strings.Builder
	b.WriteString(s[i:j])
	escaped := false
	for j < len(s) {
		r, size := utf8.DecodeRuneInString(s[j:])
		j += size
		switch {
		case escaped:
			escaped = false
		case r == '\\':
			escaped = true
			continue
		case r == '"':
			return b.String(), j, nil
		}
		b.WriteRune(r)
	}
	return "", j, errBadParams // no closing quote
}
