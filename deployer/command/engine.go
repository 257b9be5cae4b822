package command

import (
	"context"
	"fmt"
	"io"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/control"
)

// Engine is all the router asks of the deploy engine. In the daemon it is
// the *deployer.Engine; thin clients that run the router outside the
// daemon use Offline.
type Engine interface {
	Data() deployer.Data
	Config() deployer.Config
	Status(site string) (deployer.SiteStatus, error)
	Deploy(ctx context.Context, req deployer.Request, out io.Writer) (deployer.Record, error)
	Rollback(ctx context.Context, req deployer.Request, out io.Writer) (deployer.Record, error)
	Approve(ctx context.Context, site, id, user string, out io.Writer) (deployer.Record, error)
	Reject(ctx context.Context, site, id, user string, out io.Writer) (deployer.Record, error)
	Vacuum(ctx context.Context, opt deployer.VacuumOptions, out io.Writer) error
}

var _ Engine = (*deployer.Engine)(nil)

// ErrNeedsServer is what Offline answers for a verb only the daemon runs.
var ErrNeedsServer = fmt.Errorf("%w (start it with: eeveon serve)", control.ErrNoServer)

// Offline is the Engine of a thin client (eeveon shell, the read-only verbs
// answered while no server runs): the files of the data dir, read-only.
// Status is what the files tell (deployer.FileStatus); every verb that
// changes deploy state is the daemon's and fails with ErrNeedsServer.
func Offline(d deployer.Data, cfg deployer.Config) Engine { return offline{d, cfg} }

type offline struct {
	data deployer.Data
	cfg  deployer.Config
}

func (o offline) Data() deployer.Data     { return o.data }
func (o offline) Config() deployer.Config { return o.cfg }

func (o offline) Status(site string) (deployer.SiteStatus, error) {
	return deployer.FileStatus(o.data, site)
}

func (offline) Deploy(context.Context, deployer.Request, io.Writer) (deployer.Record, error) {
	return deployer.Record{}, ErrNeedsServer
}

func (offline) Rollback(context.Context, deployer.Request, io.Writer) (deployer.Record, error) {
	return deployer.Record{}, ErrNeedsServer
}

func (offline) Approve(context.Context, string, string, string, io.Writer) (deployer.Record, error) {
	return deployer.Record{}, ErrNeedsServer
}

func (offline) Reject(context.Context, string, string, string, io.Writer) (deployer.Record, error) {
	return deployer.Record{}, ErrNeedsServer
}

func (offline) Vacuum(context.Context, deployer.VacuumOptions, io.Writer) error {
	return ErrNeedsServer
}
