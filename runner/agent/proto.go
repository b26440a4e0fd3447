package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
)

// exitReport is the init's word on how the function's process ended (see
// the init command's 'X' frame).
type exitReport struct {
	Code          int    `json:"code"`
	Signal        string `json:"signal"`
	Error         string `json:"error"`
	OOMKilled     bool   `json:"oom_killed"`
	Stdout        int    `json:"stdout"`
	StdoutDropped int64  `json:"stdout_dropped"`
	Dropped       int64  `json:"dropped"`
}

// exitFrame is an 'X' frame read: the report, stdout (cold mode) and the
// last logs.
type exitFrame struct {
	exitReport
	stdout, logs []byte
}

// parseExit reads an 'X' frame's payload: 4 bytes of JSON length, the
// report, stdout, the logs.
func parseExit(payload []byte) (exitFrame, error) {
	var x exitFrame
	if len(payload) < 4 {
		return x, errors.New("agent: an exit report too short")
	}
	n := int(binary.BigEndian.Uint32(payload))
	if n > len(payload)-4 || n > maxExitReport {
		return x, errors.New("agent: an exit report longer than its frame")
	}
	if err := json.Unmarshal(payload[4:4+n], &x.exitReport); err != nil {
		return x, errors.New("agent: an exit report that is not JSON")
	}
	rest := payload[4+n:]
	if x.Stdout < 0 || x.Stdout > len(rest) {
		return x, errors.New("agent: an exit report whose stdout is longer than its frame")
	}
	x.Dropped, x.StdoutDropped = max(x.Dropped, 0), max(x.StdoutDropped, 0)
	x.stdout, x.logs = rest[:x.Stdout], rest[x.Stdout:]
	return x, nil
}

// status says how the process ended, in os/exec's words.
func (r exitReport) status() string {
	switch {
	case r.Error != "":
		return r.Error
	case r.Signal != "":
		return "signal: " + r.Signal
	}
	return "exit status " + strconv.Itoa(r.Code)
}

// reply is an 'R' frame read: a hot function's result line and its logs.
type reply struct {
	overLimit bool
	dropped   int64
	line      []byte
	logs      []byte
}

func parseReply(payload []byte) (reply, error) {
	if len(payload) < 13 {
		return reply{}, errors.New("agent: a result frame too short")
	}
	n := int(binary.BigEndian.Uint32(payload[9:]))
	if n > len(payload)-13 {
		return reply{}, errors.New("agent: a result line longer than its frame")
	}
	return reply{
		overLimit: payload[0]&1 != 0,
		dropped:   max(int64(binary.BigEndian.Uint64(payload[1:])), 0),
		line:      payload[13 : 13+n],
		logs:      payload[13+n:],
	}, nil
}
