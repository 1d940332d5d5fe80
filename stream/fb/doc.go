// Package fb reads an Xvfb framebuffer: the XWD file that `Xvfb -fbdir` keeps
// current, mapped into memory so that reading the screen costs no X round
// trip and no copy until a frame is wanted. The app owns the directory of
// that file, so its content and size are not trusted: the header must be
// sane and its pixels must fit the file before anything is mapped, and a
// file cut short while mapped makes reads fail (ErrTruncated) instead of
// killing the process with SIGBUS. It knows nothing of containers.
package fb
