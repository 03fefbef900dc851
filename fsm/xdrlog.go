package fsm

import "sort"

// xdrLog holds xDRs in Seq order, oldest first; records are immutable once
// added, so snapshots share them.
type xdrLog struct {
	items []*XDR
	head  int // items[:head] were trimmed
}

func (l *xdrLog) len() int { return len(l.items) - l.head }

func (l *xdrLog) add(x *XDR) { l.items = append(l.items, x) }

func (l *xdrLog) live() []*XDR { return l.items[l.head:] }

func (l *xdrLog) popOldest() *XDR {
	x := l.items[l.head]
	l.items[l.head] = nil
	l.head++
	if l.head > 1024 && l.head > len(l.items)/2 {
		l.items = append([]*XDR(nil), l.items[l.head:]...)
		l.head = 0
	}
	return x
}

func (l *xdrLog) get(seq uint64) (*XDR, bool) {
	live := l.live()
	i := sort.Search(len(live), func(i int) bool { return live[i].Seq >= seq })
	if i < len(live) && live[i].Seq == seq {
		return live[i], true
	}
	return nil, false
}

// after calls fn for each xDR with Seq > seq, in order, while fn is true.
func (l *xdrLog) after(seq uint64, fn func(*XDR) bool) {
	live := l.live()
	i := sort.Search(len(live), func(i int) bool { return live[i].Seq > seq })
	for ; i < len(live); i++ {
		if !fn(live[i]) {
			return
		}
	}
}
