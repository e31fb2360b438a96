package redistest

import "syscall"

// procAttr kills the server with the test process, even when it panics.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
