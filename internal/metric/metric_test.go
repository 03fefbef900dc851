package metric

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestFactoryNamesAndRegisters(t *testing.T) {
	reg := prometheus.NewRegistry()
	sip, top := New(reg, "sip"), New(reg, "")
	sip.Counter("things_total", "Things counted.").Add(2)
	Zero(top.CounterVec("results_total", "Results, by result.", "result").WithLabelValues, "ok", "failed")
	sip.Histogram("wait_seconds", "Waits.", []float64{1, 2}).Observe(1.5)
	sip.GaugeFunc("level", "A level.", func() float64 { return 7 })

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			line := mf.GetName() + " " + mf.GetHelp() + " " + mf.GetType().String()
			for _, l := range m.GetLabel() {
				line += " " + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				line += fmt.Sprint(" ", m.GetCounter().GetValue())
			case m.GetGauge() != nil:
				line += fmt.Sprint(" ", m.GetGauge().GetValue())
			case m.GetHistogram() != nil:
				h := m.GetHistogram()
				line += fmt.Sprint(" ", h.GetSampleCount(), " ", h.GetSampleSum())
				for _, b := range h.GetBucket() {
					line += fmt.Sprint(" le", b.GetUpperBound(), ":", b.GetCumulativeCount())
				}
			}
			got = append(got, line)
		}
	}
	want := []string{
		"troika_results_total Results, by result. COUNTER result=failed 0",
		"troika_results_total Results, by result. COUNTER result=ok 0",
		"troika_sip_level A level. GAUGE 7",
		"troika_sip_things_total Things counted. COUNTER 2",
		"troika_sip_wait_seconds Waits. HISTOGRAM 1 1.5 le1:0 le2:1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("gathered\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestFactoryPanicsOnTwice(t *testing.T) {
	f := New(prometheus.NewRegistry(), "sip")
	f.Gauge("level", "A level.")
	defer func() {
		if recover() == nil {
			t.Fatal("registering troika_sip_level twice did not panic")
		}
	}()
	f.GaugeVec("level", "A level.", "by")
}
