package main

import "syscall"

// procAttr makes a child die with the driver, also when the driver is
// killed, so that no service or Redis outlives a bench.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
