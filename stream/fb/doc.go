// Package fb reads an Xvfb framebuffer: the XWD file that `Xvfb -fbdir` keeps
// current, mapped into memory so that reading the screen costs no X round
// trip and no copy until a frame is wanted. It knows nothing of containers.
package fb
