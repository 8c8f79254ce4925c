// KASAN for simulated kernel objects (Vfio.Kernel/Diagnostics/Kasan.cs): a check of an object
// nobody freed says nothing; a check of a freed one is a kernel BUG whose report names the
// object, the freeing task, function and virtual time, and the accessing task, function and
// time, in the shape of mm/kasan's report.

using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

public sealed class KasanTests
{
    private sealed class Obj;

    [Test]
    public void ACheckWhenNothingWasFreed_ReportsNothing()
    {
        var k = new SimKernel();
        var o = new Obj();
        Runs.AssertPassed(k.Run(() =>
        {
            k.Kasan.Check(o, "some_function");
            Assert.That(k.Kasan.FreedCount, Is.Zero);
            Assert.That(k.Kasan.IsFreed(o), Is.False);
        }));
        Assert.That(k.Kasan.LastReport, Is.Null);
    }

    [Test]
    public void ACheckOfAnotherObject_AfterAFree_ReportsNothing()
    {
        var k = new SimKernel();
        var freed = new Obj();
        var live = new Obj();
        Runs.AssertPassed(k.Run(() =>
        {
            k.Kasan.Free(freed, "obj A");
            k.Kasan.Check(live, "some_function");
            Assert.That(k.Kasan.IsFreed(freed), Is.True);
            Assert.That(k.Kasan.IsFreed(live), Is.False);
        }));
    }

    [Test]
    public void AnAccessAfterTheFree_IsAKernelBug_NamingTheObjectTheFreeingTaskAndTimeAndTheAccessor()
    {
        var k = new SimKernel(new KernelConfig { Mode = SchedulerMode.Controlled });
        var o = new Obj();
        long freedAt = 0, accessedAt = 0;
        RunResult r = k.Run(() =>
        {
            KTask freer = k.Spawn("freer", () =>
            {
                KTask.Msleep(1000);
                freedAt = k.Clock.NowNs;
                k.Kasan.Free(o, "vfio_device vfio7 (0000:01:00.0)", "vfio_device_release");
            });
            freer.Join();
            KTask.Msleep(500);
            KTask user = k.Spawn("user", () =>
            {
                accessedAt = k.Clock.NowNs;
                k.Kasan.Check(o, "vfio_device_fops_unl_ioctl");
            });
            user.Join();
        });

        Assert.That(r.Outcome, Is.EqualTo(RunOutcome.Panic), r.Describe());
        Assert.That(accessedAt, Is.GreaterThan(freedAt), "the access came later in virtual time");
        string report = k.Kasan.LastReport!;
        string[] lines = report.Split('\n');
        Assert.That(lines[0], Does.StartWith("BUG: KASAN: slab-use-after-free in vfio_device_fops_unl_ioctl: vfio_device vfio7 (0000:01:00.0) was freed by task freer/"));
        Assert.That(lines[0], Does.Contain($"at t={SimClock.FormatNs(freedAt)}; accessed by task user/"));
        Assert.That(lines[0], Does.EndWith($"at t={SimClock.FormatNs(accessedAt)}"));
        Assert.That(lines, Does.Contain("BUG: KASAN: slab-use-after-free in vfio_device_fops_unl_ioctl"));
        Assert.That(report, Does.Contain($"Freed by task freer/").And.Contain($"at t={SimClock.FormatNs(freedAt)}:\n vfio_device_release\n"));
        Assert.That(report, Does.Contain("Accessed by task user/").And.Contain($"at t={SimClock.FormatNs(accessedAt)}:\n vfio_device_fops_unl_ioctl\n"));
        Assert.That(report, Does.Contain("The buggy address belongs to the object vfio_device vfio7 (0000:01:00.0)"));
        Assert.That(r.Exception?.Message, Is.EqualTo(report), "the BUG carries the report");
        Assert.That(k.Log.Dmesg(), Does.Contain("Freed by task freer/"), "the report is printed to the kernel log");
    }
}
