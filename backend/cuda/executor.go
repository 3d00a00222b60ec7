package cuda

import (
	"fmt"
	"runtime"
	"sync"
)

// executor runs functions one at a time on a single goroutine locked to its
// OS thread: the CUDA context is current per thread, so every driver call
// goes through here.
type executor struct {
	reqs chan request
	stop sync.Once
	done chan struct{}
}

type request struct {
	fn  func() error
	res chan error
}

var resultChans = sync.Pool{New: func() any { return make(chan error, 1) }}

func newExecutor() *executor {
	e := &executor{reqs: make(chan request), done: make(chan struct{})}
	go e.loop()
	return e
}

func (e *executor) loop() {
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	defer close(e.done)
	for r := range e.reqs {
		r.res <- runSafely(r.fn)
	}
}

// runSafely turns a panic in fn into an error, so that one bad call does
// not take the locked thread (and every later call) down with it.
func runSafely(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cuda: panic on the device thread: %v", p)
		}
	}()
	return fn()
}

// do runs fn on the executor's thread and returns its error.
func (e *executor) do(fn func() error) error {
	res := resultChans.Get().(chan error)
	e.reqs <- request{fn: fn, res: res}
	err := <-res
	resultChans.Put(res)
	return err
}

// close stops the executor after the requests already sent.
func (e *executor) close() {
	e.stop.Do(func() { close(e.reqs) })
	<-e.done
}
