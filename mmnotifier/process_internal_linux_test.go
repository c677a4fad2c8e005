package mmnotifier

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Where userfaultfd cannot be had, the error says which case it is and
// what to do.
func TestUnavailableSaysWhyAndWhatToDo(t *testing.T) {
	for _, c := range []struct {
		sys  unix.Errno
		dev  error
		want []string
	}{
		{unix.ENOSYS, unix.ENOENT, []string{"ENOSYS", "CONFIG_USERFAULTFD", "sandbox", "allow userfaultfd", "/dev/userfaultfd: no such file", "Linux 6.1"}},
		{unix.EPERM, unix.EACCES, []string{"EPERM", "vm.unprivileged_userfaultfd=0", "CAP_SYS_PTRACE", "sysctl vm.unprivileged_userfaultfd=1", "permission denied", "read-write access"}},
	} {
		err := unavailable(c.sys, c.dev)
		require.True(t, errors.Is(err, ErrNoUserfaultfd))
		for _, w := range c.want {
			require.Contains(t, err.Error(), w)
		}
	}
}
