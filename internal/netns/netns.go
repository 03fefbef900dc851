// Package netns runs code inside a named network namespace (one `ip
// netns add` created): the chaos harness's hosts and the address tests of
// cluster.
package netns
