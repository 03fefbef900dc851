package sipmsg

import (
	"strings"
	"testing"
)

func TestParseContact(t *testing.T) {
	cases := []struct {
		in   string
		want ContactSpec
		err  string // requestError substring; "*" for wildcard
	}{
		{in: "<sip:1001@10.0.0.1:5060>", want: ContactSpec{URI: "sip:1001@10.0.0.1:5060", Q: -1}},
		{in: "sip:1001@10.0.0.1", want: ContactSpec{URI: "sip:1001@10.0.0.1", Q: -1}},
		{in: `"Alice, Office" <sip:1001@10.0.0.1;transport=tcp>;expires=60;q=0.5`,
			want: ContactSpec{URI: "sip:1001@10.0.0.1;transport=tcp", Expires: 60, HasExpires: true, Q: 500}},
		{in: `Alice <sips:1001@example.com>;Q=1.000;EXPIRES = 0`,
			want: ContactSpec{URI: "sips:1001@example.com", HasExpires: true, Q: 1000}},
		{in: `<sip:1001@10.0.0.1>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=2`,
			want: ContactSpec{URI: "sip:1001@10.0.0.1", Q: -1, Instance: "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>", RegID: 2}},
		{in: `sip:1001@10.0.0.1;+sip.instance="<urn:uuid:1>";q=0`,
			want: ContactSpec{URI: "sip:1001@10.0.0.1", Q: 0, Instance: "<urn:uuid:1>"}},
		{in: "*", err: "*"},
		{in: "<tel:+15551234>", err: "must be sip"},
		{in: "<sip:1001@10.0.0.1", err: "missing >"},
		{in: "<>", err: "empty URI"},
		{in: `"unterminated <sip:a@b>`, err: "unterminated"},
		{in: "<sip:1001@10.0.0.1>;expires=soon", err: "expires"},
		{in: "<sip:1001@10.0.0.1>;q=2", err: "q-value"},
		{in: "<sip:1001@10.0.0.1>;q=1.5", err: "q-value"},
		{in: "<sip:1001@10.0.0.1>;q=0.1234", err: "q-value"},
		{in: "<sip:1001@10.0.0.1>;reg-id=0", err: "reg-id"},
		{in: "<sip:1001@10.0.0.1>;+sip.instance=", err: "instance"},
		{in: "<sip:1001@10.0.0.1> junk", err: "text after"},
		{in: "<sip:" + strings.Repeat("a", 600) + "@h>", err: "too long"},
		{in: "<sip:10\n01@h>", err: "invalid characters"},
		{in: "<sip:10\x0001@h>", err: "invalid characters"},
		{in: "<sip:@>", err: "no host"},
		{in: "<garbage>", err: "Malformed Contact URI"},
		{in: "sip:user@example.com?Route=%3Csip:sip.example.com%3E", err: "must be in <>"},
		{in: "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>", want: ContactSpec{URI: "sip:user@example.com?Route=%3Csip:sip.example.com%3E", Q: -1}},
	}
	for _, c := range cases {
		got, err := ParseContact(c.in)
		switch {
		case c.err == "*":
			if err != ErrWildcard {
				t.Errorf("%q: err %v, want wildcard", c.in, err)
			}
		case c.err != "":
			if re, ok := err.(RequestError); !ok || !strings.Contains(string(re), c.err) {
				t.Errorf("%q: err %v, want one containing %q", c.in, err, c.err)
			}
		case err != nil:
			t.Errorf("%q: %v", c.in, err)
		case got != c.want:
			t.Errorf("%q: got %+v, want %+v", c.in, got, c.want)
		}
	}
	list := SplitList(`<sip:a@h>;q=0.1, "x, y" <sip:b@h;p=1,2>, sip:c@h , ,`)
	if len(list) != 3 || list[1] != `"x, y" <sip:b@h;p=1,2>` {
		t.Errorf("splitList: %q", list)
	}
	for q, want := range map[int]string{0: "0", 1: "0.001", 10: "0.01", 500: "0.5", 999: "0.999", 1000: "1"} {
		if got := FormatQ(q); got != want {
			t.Errorf("FormatQ(%d) = %q, want %q", q, got, want)
		}
	}
	if p, err := ParsePath([]string{"<sip:p1@h;lr>, <sip:p2@h;lr>", "<sip:p3@h;lr>"}); err != nil || len(p) != 3 {
		t.Errorf("ParsePath: %q %v", p, err)
	}
	if _, err := ParsePath([]string{"<sip:1>,<sip:2>,<sip:3>,<sip:4>,<sip:5>,<sip:6>"}); err == nil {
		t.Errorf("ParsePath accepted 6 entries")
	}
	if got := CleanText("Phone\r\n X-Evil: 1\x00"+strings.Repeat("é", 200), MaxUserAgent); len(got) > MaxUserAgent || !SafeText(got) {
		t.Errorf("cleanText: %q", got)
	}
}
