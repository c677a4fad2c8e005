package dmafence_test

import (
	"testing"

	"github.com/krules/krules/krulestest"
)

func TestMain(m *testing.M) { krulestest.VerifyTestMain(m) }
