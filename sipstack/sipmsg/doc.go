// Package sipmsg is how troika reads and answers SIP requests, whatever
// part of the switch handles them: the headers every request needs
// (CheckRequest, CheckRequire), requests that cannot be answered safely
// (EchoSafe), header values and lists, text that may be stored or copied
// between call legs (SafeText, CleanText), Contact entries and Path
// (ParseContact, ParsePath), and the final response that ends its
// transaction at once (Reply, Respond).
//
// It holds no state and imports only sipgo's message types.
package sipmsg
