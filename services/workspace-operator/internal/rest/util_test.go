package rest

import "time"

func sleep() { time.Sleep(50 * time.Millisecond) }
