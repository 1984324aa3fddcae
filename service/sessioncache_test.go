package service

import (
	"testing"
	"time"
)

// A session read before a drop is not remembered after it: otherwise a
// request racing a logout could keep the ended session alive for the TTL.
func TestSessionCacheRefusesWhatWasReadBeforeADrop(t *testing.T) {
	c := newSessionCache(5 * time.Second)
	now := time.Now()
	p := Principal{Kind: "patient", ID: 7, SessionID: "s1"}
	before := c.current()
	c.drop() // a logout commits while the request reads the session row
	c.put(p, now, before)
	if _, ok := c.get("s1", now); ok {
		t.Fatal("a session read before the drop was cached")
	}
	c.put(p, now, c.current())
	if got, ok := c.get("s1", now); !ok || got != p {
		t.Fatalf("a fresh read was not cached: %v %v", got, ok)
	}
	if _, ok := c.get("s1", now.Add(5*time.Second)); ok {
		t.Fatal("an entry outlived its TTL")
	}
	off := newSessionCache(-1)
	off.put(p, now, off.current())
	if _, ok := off.get("s1", now); ok {
		t.Fatal("a negative TTL still caches")
	}
}
