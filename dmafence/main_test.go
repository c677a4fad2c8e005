package dmafence_test

import (
	"testing"

	"github.com/krules/krules"
)

func TestMain(m *testing.M) { krules.VerifyTestMain(m) }
