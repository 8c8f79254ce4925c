// Tests Vfio.Core/VfioVirqfd.cs (drivers/vfio/virqfd.c): enabling checks the fd and the slot
// (a file that is not an eventfd: VfioPciIntrsTests),
// a write runs the handler in the writer's task and the thread in the inject work, closing
// the eventfd deactivates the virqfd and drops its reference, disable does the same at once.

using NUnit.Framework;
using Vfio.Core;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;
using Vfio.Tests.Platform.Pci;

namespace Vfio.Tests.Core;

public sealed class VfioVirqfdTests
{
    private static void Run(Action<SimProcess, VfioVirqfdSet> body)
    {
        SimMachine m = PciMachines.OneDevice();
        SimProcess p = m.CreateProcess("user");
        var set = new VfioVirqfdSet(m.Kernel, "test");
        Runs.AssertPassed(m.Kernel.Run(() => p.SpawnThread("user", () => body(p, set)).Join()));
    }

    private static int Refs(SimProcess p, int fd)
    {
        SimFile f = p.Files.Get(fd)!;
        EventFdContext ctx = EventFdContext.FromFile(f)!;
        f.Put();
        int n = ctx.ReferenceCount - 1;
        ctx.Put();
        return n;
    }

    [Test]
    public void Enable_RefusesClosedFdsOtherFilesAndASecondVirqfd()
    {
        Run((p, set) =>
        {
            var slot = new VfioVirqfdSlot();
            Assert.That(set.Enable(null, null, slot, 99, "test"), Is.EqualTo(Errno.EBADF.Negative()));
            int e = p.Eventfd(0);
            Assert.That(set.Enable(null, null, slot, e, "test"), Is.Zero);
            Assert.That(set.Enable(null, null, slot, e, "test"), Is.EqualTo(Errno.EBUSY.Negative()));
            Assert.That(Refs(p, e), Is.EqualTo(2));
            set.Disable(slot);
            Assert.That((slot.IsActive, Refs(p, e)), Is.EqualTo((false, 1)));
        });
    }

    [Test]
    public void AWrite_RunsTheHandlerAndTheInjectWork_AndTakesTheCount()
    {
        Run((p, set) =>
        {
            var slot = new VfioVirqfdSlot();
            int handled = 0, injected = 0;
            int e = p.Eventfd(0);
            Assert.That(set.Enable(() => ++handled % 2 == 1, () => Interlocked.Increment(ref injected), slot, e, "test"), Is.Zero);
            p.Write(e, BitConverter.GetBytes(1UL));
            Runs.SleepUntil(() => Volatile.Read(ref injected) == 1);
            p.Write(e, BitConverter.GetBytes(1UL));
            Runs.SleepUntil(() => Volatile.Read(ref handled) == 2);
            KTask.Msleep(1);
            Assert.That((Volatile.Read(ref handled), Volatile.Read(ref injected)), Is.EqualTo((2, 1)), "the thread runs only when the handler asks");
            set.Disable(slot);
        });
    }

    [Test]
    public void ClosingTheEventfd_DeactivatesTheVirqfd_AndDropsItsReference()
    {
        Run((p, set) =>
        {
            var slot = new VfioVirqfdSlot();
            int e = p.Eventfd(0);
            Assert.That(set.Enable(null, () => { }, slot, e, "test"), Is.Zero);
            p.Close(e);
            Runs.SleepUntil(() => !slot.IsActive);
            Assert.That(slot.IsActive, Is.False);
            set.Disable(slot);
        });
    }
}
