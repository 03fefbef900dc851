// Package sipmsg is how troika reads and answers SIP requests, whatever
// part of the switch handles them: the datagrams refused before sipgo sees
// them (ScreenDatagram), the start line and headers every request needs
// (CheckRequest, CheckRequire), requests that cannot be answered safely
// (EchoSafe), header values and lists, text that may be stored or copied
// between call legs (SafeText, CleanText), Contact entries and Path
// (ParseContact, ParsePath), and the final response that ends its
// transaction at once (Reply, Respond), with the label of a refusal
// (Reply.Bad) that the SIP server counts.
//
// testdata/rfc4475 in sipstack holds the messages of RFC 4475 (SIP torture
// tests); TestRFC4475 lists troika's answer to each.
//
// It holds no state and imports only sipgo's message types.
package sipmsg
