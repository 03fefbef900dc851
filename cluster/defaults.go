package cluster

// setDefault sets *v to def when it is the zero value: the configuration
// defaults of this package.
func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
