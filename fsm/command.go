package fsm

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Type is the first byte of an encoded command. A type byte names one
// command at one version: a changed body gets a new type byte and the old
// decoder stays, because logs and snapshots written by older versions are
// replayed.
type Type byte

// IgnorableFlag marks a command type that a replica which does not know it
// may skip without diverging (nothing money-related, nothing that changes
// what a query returns). Unknown types without the flag stop the replica.
const IgnorableFlag Type = 0x80

// Command types. Never reuse or renumber a value.
const (
	TypeCreateAccountV1     Type = 0x01 // legacy.go
	TypeUpdateAccountV1     Type = 0x02 // legacy.go
	TypeDeleteAccount       Type = 0x03
	TypePutAlias            Type = 0x04
	TypeDeleteAlias         Type = 0x05
	TypeRegister            Type = 0x06
	TypePurgeExpired        Type = 0x07
	TypeInitNonceSecret     Type = 0x08
	TypePutTariff           Type = 0x09
	TypeDeleteTariff        Type = 0x0a
	TypeCreateAccountsV1    Type = 0x0b // legacy.go
	TypeStartCallV1         Type = 0x0c // quota.go
	TypeAnswerCall          Type = 0x0d
	TypeEndCall             Type = 0x0e
	TypeTopupV1             Type = 0x0f
	TypeTrimRecords         Type = 0x10
	TypePutServicePolicy    Type = 0x11
	TypeDeleteServicePolicy Type = 0x12
	TypePutVendorV1         Type = 0x13 // legacy.go
	TypeDeleteVendor        Type = 0x14
	TypePutConnectionV1     Type = 0x15 // legacy.go
	TypeDeleteConnection    Type = 0x16
	TypeRedirectCall        Type = 0x17
	TypeAssignAddresses     Type = 0x19 // ownership.go
	TypeAddressBarrier      Type = 0x1a // ownership.go
	TypeAdoptCall           Type = 0x1b // dialogs.go
	TypeCreateAccount       Type = 0x1c
	TypeUpdateAccount       Type = 0x1d
	TypeCreateAccounts      Type = 0x1e
	TypePutVendor           Type = 0x1f
	TypePutConnection       Type = 0x20
	TypeInitRealm           Type = 0x21 // credentials.go
	TypeSecureCredentials   Type = 0x22 // credentials.go
	TypeTopup               Type = 0x23
	TypeStartCall           Type = 0x24
	TypeExtendCall          Type = 0x25 // quota.go
)

// Command is one change to the replicated state.
type Command interface {
	Type() Type
	apply(s *State) Result
}

// commandTypes is the decoder table: every type this version understands.
var commandTypes = map[Type]func() Command{
	TypeCreateAccountV1:     func() Command { return new(CreateAccountV1) },
	TypeUpdateAccountV1:     func() Command { return new(UpdateAccountV1) },
	TypeDeleteAccount:       func() Command { return new(DeleteAccount) },
	TypePutAlias:            func() Command { return new(PutAlias) },
	TypeDeleteAlias:         func() Command { return new(DeleteAlias) },
	TypeRegister:            func() Command { return new(Register) },
	TypePurgeExpired:        func() Command { return new(PurgeExpired) },
	TypeInitNonceSecret:     func() Command { return new(InitNonceSecret) },
	TypePutTariff:           func() Command { return new(PutTariff) },
	TypeDeleteTariff:        func() Command { return new(DeleteTariff) },
	TypeCreateAccountsV1:    func() Command { return new(CreateAccountsV1) },
	TypeStartCallV1:         func() Command { return new(StartCallV1) },
	TypeAnswerCall:          func() Command { return new(AnswerCall) },
	TypeEndCall:             func() Command { return new(EndCall) },
	TypeTopupV1:             func() Command { return new(TopupV1) },
	TypeTrimRecords:         func() Command { return new(TrimRecords) },
	TypePutServicePolicy:    func() Command { return new(PutServicePolicy) },
	TypeDeleteServicePolicy: func() Command { return new(DeleteServicePolicy) },
	TypePutVendorV1:         func() Command { return new(PutVendorV1) },
	TypeDeleteVendor:        func() Command { return new(DeleteVendor) },
	TypePutConnectionV1:     func() Command { return new(PutConnectionV1) },
	TypeDeleteConnection:    func() Command { return new(DeleteConnection) },
	TypeRedirectCall:        func() Command { return new(RedirectCall) },
	TypeAssignAddresses:     func() Command { return new(AssignAddresses) },
	TypeAddressBarrier:      func() Command { return new(AddressBarrier) },
	TypeAdoptCall:           func() Command { return new(AdoptCall) },
	TypeCreateAccount:       func() Command { return new(CreateAccount) },
	TypeUpdateAccount:       func() Command { return new(UpdateAccount) },
	TypeCreateAccounts:      func() Command { return new(CreateAccounts) },
	TypePutVendor:           func() Command { return new(PutVendor) },
	TypePutConnection:       func() Command { return new(PutConnection) },
	TypeInitRealm:           func() Command { return new(InitRealm) },
	TypeSecureCredentials:   func() Command { return new(SecureCredentials) },
	TypeTopup:               func() Command { return new(Topup) },
	TypeStartCall:           func() Command { return new(StartCall) },
	TypeExtendCall:          func() Command { return new(ExtendCall) },
}

// ErrUnknownType is returned for a command type this version does not know.
var ErrUnknownType = errors.New("unknown command type")

// maxCommandSize bounds a decoded command; bigger input is refused before
// decoding.
const maxCommandSize = 1 << 20

// Encode returns the wire form of c: its type byte, then its msgpack body
// (structs as arrays, fields in declaration order).
func Encode(c Command) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte(byte(c.Type()))
	enc := msgpack.NewEncoder(&buf)
	enc.UseArrayEncodedStructs(true)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode command %#x: %w", byte(c.Type()), err)
	}
	return buf.Bytes(), nil
}

// Decode parses one encoded command. Unknown types return an error wrapping
// ErrUnknownType; for an ignorable unknown type the returned Type has
// IgnorableFlag set so the caller may skip it.
func Decode(data []byte) (Type, Command, error) {
	if len(data) == 0 {
		return 0, nil, errors.New("decode command: empty")
	}
	if len(data) > maxCommandSize {
		return 0, nil, fmt.Errorf("decode command: %d bytes is over the %d limit", len(data), maxCommandSize)
	}
	t := Type(data[0])
	newCmd, ok := commandTypes[t]
	if !ok {
		return t, nil, fmt.Errorf("decode command %#x: %w", byte(t), ErrUnknownType)
	}
	c := newCmd()
	if err := decodeBody(data[1:], c); err != nil {
		return t, nil, fmt.Errorf("decode command %#x: %w", byte(t), err)
	}
	return t, c, nil
}

// decodeBody decodes one msgpack value that must fill body exactly. A
// first pass skips over the value without building it: msgpack v5.4.1
// pre-allocates a slice of whatever length the input declares (its alloc
// limit check is inverted), so a forged length must be caught before the
// real decode. The skip pass fails at the end of input instead.
func decodeBody(body []byte, v any) error {
	r := bytes.NewReader(body)
	if err := msgpack.NewDecoder(r).Skip(); err != nil {
		return err
	}
	if r.Len() != 0 {
		return errors.New("trailing bytes after body")
	}
	dec := msgpack.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields(true)
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.Buffered().(*bytes.Reader).Len() != 0 {
		return errors.New("trailing bytes after body")
	}
	return nil
}

// ErrCode classifies a command that was applied but refused.
type ErrCode string

// Refusal codes.
const (
	CodeInvalid         ErrCode = "invalid"
	CodeNotFound        ErrCode = "not_found"
	CodeExists          ErrCode = "exists"
	CodeConflict        ErrCode = "conflict"
	CodeTooManyContacts ErrCode = "too_many_contacts"
	CodeStaleCSeq       ErrCode = "stale_cseq"
)

// Error is a refusal: the command was applied and changed nothing.
type Error struct {
	Code  ErrCode
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Msg
	}
	return e.Msg
}

func refuse(code ErrCode, field, format string, args ...any) Result {
	return Result{Err: &Error{Code: code, Field: field, Msg: fmt.Sprintf(format, args...)}}
}

func refuseInvalid(err error) Result {
	var fe *FieldError
	if errors.As(err, &fe) {
		return Result{Err: &Error{Code: CodeInvalid, Field: fe.Field, Msg: fe.Msg}}
	}
	return Result{Err: &Error{Code: CodeInvalid, Msg: err.Error()}}
}

// Result is what applying a command returned to its proposer. It travels
// back over the cluster link, so it is plain data.
type Result struct {
	Err      *Error
	Bindings []Binding // Register: the AOR's bindings after the change
	Purged   int       // PurgeExpired: how many bindings were removed
	Account  *Account  // CreateAccount, UpdateAccount, Topup: the account as stored
	Call     *Call     // StartCall, AnswerCall, RedirectCall, AdoptCall, ExtendCall: the call as stored
	XDR      *XDR      // EndCall: the call's record
}

// EncodeResult and DecodeResult carry a Result across the cluster link.
func EncodeResult(r Result) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseArrayEncodedStructs(true)
	if err := enc.Encode(&r); err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	return buf.Bytes(), nil
}

// DecodeResult is the inverse of EncodeResult.
func DecodeResult(data []byte) (Result, error) {
	var r Result
	if err := decodeBody(data, &r); err != nil {
		return Result{}, fmt.Errorf("decode result: %w", err)
	}
	return r, nil
}
