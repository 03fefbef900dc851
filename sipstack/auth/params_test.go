package auth

import (
	"reflect"
	"testing"

	"github.com/icholy/digest"
)

var credentialSeeds = []string{
	`Digest username="1001", realm="troika", nonce="n", uri="sip:x", response="abc", qop=auth, nc=00000001, cnonce="c"`,
	`Digest username="u000017",realm="troika",cnonce="6b8b4567",nc=00000001,qop=auth,uri="sip:127.0.0.51:5060",nonce="AAABjN2xJ0B9cHr2c3bWq8Ug0Y3e5Hq1",response="6629fae49393a05397450978507c4ef1",algorithm=MD5`,
	`digest USERNAME="x", username = "a\"b\\c" ,realm="tro ika",opaque="",userhash=TRUE,algorithm=SHA-256`,
	`Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`,
	`Digest username="é\xff\xfe", realm="troika"`,
	`Digest username="1001, realm="troika`,
	`Digest username="1001", realm="troika", nc=zz`,
	`Digest nc=7fffffff`, `Digest nc=80000000`, `Digest nc=-1`, `Digest =x`, `Digest a=`, `Digest a= , b=c`,
	`Digest a=b c=d`, `Digest a=b,,c=d`, `Digest a`, `Digest a="b`, `Digest a="b\`, `Digest a=b,`, `Digest`, `Digest `,
	`Basic Zm9vOmJhcg==`, "Digest a=\tb", `Digest  a  =  "b"  ,  c = d  `,
}

// parseCredentials reads exactly what digest.ParseCredentials reads, and
// refuses what it refuses.
func TestParseCredentialsAsLibrary(t *testing.T) {
	for _, s := range credentialSeeds {
		compareCredentialParsers(t, s)
	}
}

func FuzzParseCredentials(f *testing.F) {
	for _, s := range credentialSeeds {
		f.Add(s)
	}
	f.Fuzz(compareCredentialParsers)
}

func compareCredentialParsers(t *testing.T, s string) {
	want, werr := digest.ParseCredentials(s)
	got, gerr := parseCredentials(s)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%q: library error %v, ours %v", s, werr, gerr)
	}
	if werr == nil && !reflect.DeepEqual(want, got) {
		t.Fatalf("%q:\nlibrary %+v\n   ours %+v", s, want, got)
	}
}
