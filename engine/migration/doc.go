// Package migration is the handoff protocol: it moves a running app from this
// machine's engine to a peer's, over HTTP requests the caller carries (the
// daemon uses its mutual-TLS peer channel), and keeps the move transactional.
//
// Source                                   Destination
//
//	POST /offer  spec, CRIU, arch, kernel,  →  refuse now (declined, no space,
//	             CPU features                 a CPU or kernel that lacks what the
//	                                          app may use) or accept, and get
//	                                          the kernel ready for the restore
//	POST /{id}/manifest   handles manifest →  ← files it lacks
//	dump while running;   PUT /{id}/pre/stream  page images as CRIU writes them
//	                      POST /{id}/pre/index  ← pieces that did not stream whole
//	                      PUT /{id}/pre/pieces  those pieces
//	again while it shrinks: PUT /{id}/pre2/delta?base=pre, …/pre3/… (up to
//	                      pre5): the index as its difference from the round
//	                      before, with the pieces the destination lacks
//	freeze; final dump;   PUT /{id}/final/delta?base=preN
//	PUT /{id}/upper       upper dir + the files it lacked
//	POST /{id}/commit                     →  assemble, restore, first frame
//	release the frozen copy                ← running
//
// Until the destination answers the commit with "running", the source keeps
// the frozen app and thaws it on any error, timeout or cancel; the
// destination removes everything it received for a handoff that did not
// commit. Pages travel once: each round sends only pages the rounds before
// did not already deliver (engine/delta). The first round's pages go while
// the dump is still being written, and are only trusted once its index
// confirms them; after it the source knows what the destination holds (the
// last round's pieces) and sends each round in one request, which the
// destination checks covers what it lacks. Rounds go on while each sends
// clearly less than the one before and a sample of the app's memory, read
// while it runs, says enough changed since the last dump for another round
// to pay for its dump; so the final round, with the app frozen, sends only
// what changed during the last one. That keeps the freeze short on kernels
// without dirty-page tracking.
//
// It knows nothing of TLS, mDNS or the UI.
package migration
