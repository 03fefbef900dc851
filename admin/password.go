package admin

import (
	"crypto/rand"
	"fmt"
	"strings"

	"github.com/troika-sip/troika/fsm"
)

// The password policy of the SIP digest passwords the API sets (accounts,
// vendors, connections), and the passwords it generates. The API enforces
// it, not the state machine: commands stored before it keep applying.

// Password policy bounds.
const (
	MinPasswordLength = 10
	MaxPasswordLength = 128
	// LongPassword is the length from which a password needs no mix of
	// character classes.
	LongPassword = 16
	// minClasses is how many of the four classes (lower-case, upper-case,
	// digits, others) a shorter password needs.
	minClasses = 3
	// minNameInPassword: user names shorter than this are not looked for
	// in passwords.
	minNameInPassword = 3
	// GeneratedPasswordLength is the length of the passwords the API
	// generates: letters and digits, about 119 bits.
	GeneratedPasswordLength = 20
)

// PasswordRule is the policy in one sentence, for messages and help.
const PasswordRule = "10-128 printable ASCII characters, not containing the user name, and either 16 characters or more or 3 of the 4 classes lower-case, upper-case, digits, other"

// CheckPassword reports why password may not be the SIP password of a
// credential known by the user names in users (an account's id; a
// vendor's id and user name): nil if it may. The error is a
// *fsm.FieldError on "password" that states the rule broken.
func CheckPassword(password string, users ...string) error {
	bad := func(format string, args ...any) error {
		return &fsm.FieldError{Field: "password", Msg: fmt.Sprintf(format, args...)}
	}
	n := len(password)
	switch {
	case n == 0:
		return bad(`is required (or send "generate_password": true to have one generated)`)
	case n < MinPasswordLength:
		return bad(`too short: %d characters, at least %d (the rule: %s; or send "generate_password": true)`, n, MinPasswordLength, PasswordRule)
	case n > MaxPasswordLength:
		return bad("too long: %d characters, at most %d", n, MaxPasswordLength)
	}
	var lower, upper, digit, other bool
	for i := 0; i < n; i++ {
		c := password[i]
		switch {
		case c < 0x20 || c > 0x7e:
			return bad("only printable ASCII characters (letters, digits, punctuation, space): no control or non-ASCII characters")
		case c >= 'a' && c <= 'z':
			lower = true
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= '0' && c <= '9':
			digit = true
		default:
			other = true
		}
	}
	lp := strings.ToLower(password)
	for _, u := range users {
		if len(u) >= minNameInPassword && strings.Contains(lp, strings.ToLower(u)) {
			return bad("must not contain the user name %q (in any case)", u)
		}
	}
	classes := 0
	for _, has := range []bool{lower, upper, digit, other} {
		if has {
			classes++
		}
	}
	if n < LongPassword && classes < minClasses {
		return bad("has %d of the 4 character classes (lower-case letters, upper-case letters, digits, other characters): use at least %d of them, or at least %d characters",
			classes, minClasses, LongPassword)
	}
	return nil
}

const passwordAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// GeneratePassword returns a new random password (crypto/rand) of
// GeneratedPasswordLength letters and digits that passes CheckPassword
// for users.
func GeneratePassword(users ...string) string {
	for {
		b := make([]byte, 0, GeneratedPasswordLength)
		var r [1]byte
		for len(b) < GeneratedPasswordLength {
			rand.Read(r[:]) // crypto/rand never returns an error on supported platforms
			// 248 = 4 * 62: drop the bytes above it so that every
			// character is equally likely.
			if r[0] < 248 {
				b = append(b, passwordAlphabet[int(r[0])%len(passwordAlphabet)])
			}
		}
		if p := string(b); CheckPassword(p, users...) == nil {
			return p
		}
	}
}

// generated fills *password with a new one when generate is set (a
// "generate_password": true) and returns it; "" when not asked. Asking
// with a password given is an error.
func generated(password *string, generate bool, users ...string) (string, error) {
	if !generate {
		return "", nil
	}
	if *password != "" {
		return "", &fsm.FieldError{Field: "generate_password", Msg: "give password or generate_password, not both"}
	}
	*password = GeneratePassword(users...)
	return *password, nil
}

// credentialPassword is generated for the password of a vendor's or a
// connection's username: there is none without a username (nothing would
// authenticate with it, and only a username's digest is stored), so a
// password or generate_password without one is refused rather than
// dropped.
func credentialPassword(password *string, generate bool, username string, users ...string) (string, error) {
	if username == "" && (*password != "" || generate) {
		field := "password"
		if generate {
			field = "generate_password"
		}
		return "", &fsm.FieldError{Field: field, Msg: "only with a username: calls authenticate as that user, and without one nothing would use the password"}
	}
	return generated(password, generate, append([]string{username}, users...)...)
}
