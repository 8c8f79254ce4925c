// UnbindDesigns: for kernel developers weighing designs of the vfio core.
//
// What should unbinding a device do while user space holds it open? This runs one scenario
// under each VfioUnbindPolicy and prints the results side by side: SilentBlock (the design
// before 2015), RequestAndWait (today's kernel), RequestThenRevoke (proposed: revoke the
// user's access once RevokeAfter, 30 s, has passed, checked at the start of each 10 s slice
// of the wait) and NoWait (an unbind that does not wait at all: the device is freed under the
// user's open fd, and the user's next access is a use-after-free, which the simulated KASAN
// reports as a kernel BUG — the run is expected to end that way). The scenario is the same every time: a user (QEMU, say) holds edu open with
// an eventfd on vfio-pci's REQ interrupt index, an administrator's task unbinds edu, and the
// user either releases the device when asked or ignores the request and closes after 60 s.
// Each request() of the core becomes one signal of the REQ eventfd, which counts them.
// Everything runs under the controlled scheduler with seed 1, so times are virtual
// (kernel.Clock) and the table is the same on every run.

using System.Globalization;
using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;
using Vfio.Sim;

const string Edu = "0000:01:00.0";
const long GiveUpAfterNs = 60_000_000_000;

var rows = new List<Row>();
foreach (bool cooperative in new[] { true, false })
{
    foreach (VfioUnbindPolicy policy in Enum.GetValues<VfioUnbindPolicy>())
    {
        rows.Add(Measure(policy, cooperative));
    }
}

Console.WriteLine($"{"design",-18} {"user",-26} {"unbind took",11} {"REQ signals",11}  user's device fd after the unbind");
foreach (Row r in rows)
{
    Console.WriteLine($"{r.Policy,-18} {r.User,-26} {Seconds(r.UnbindNs),11} {r.Signals,11}  {r.FdAfter}");
}

Console.WriteLine();
foreach (Row r in rows)
{
    Console.WriteLine($"dmesg, {r.Policy}, user {r.User}:");
    Console.WriteLine(r.Dmesg.Count == 0 ? "  (nothing)" : string.Join('\n', r.Dmesg.Select(line => "  " + line)));
}

bool ok = rows.All(r => r.Passed);
Console.WriteLine(ok ? "every run did what its design does" : "a run did not do what its design does: see above");
return ok ? 0 : 1;

static Row Measure(VfioUnbindPolicy policy, bool cooperative)
{
    VfioSim sim = VfioSim.CreateBuilder()
        .UseSeed(1)
        .AddVfioPci()
        .UseDesign(d => d with { Unbind = policy })
        .AddModule(s => s.Bind(Edu))
        .Build();
    SimClock clock = sim.Kernel.Clock;
    long unbindNs = 0, signals = 0, logBefore = 0;
    string fdAfter = "";

    RunResult run = sim.Run(() =>
    {
        SimProcess user = sim.Spawn("qemu");
        VfioSession session = sim.Open(user, Edu);
        int req = user.Eventfd(0, EventFdContext.EFD_NONBLOCK);
        session.Device.SetIrqEventfd(VfioPciIndex.IrqReq, req);

        logBefore = sim.Kernel.Log.Total;
        long start = clock.NowNs;
        SimProcess admin = sim.Spawn("admin");
        KTask unbinder = admin.SpawnThread("unbind", () =>
        {
            sim.Unbind(Edu, admin);
            unbindNs = clock.NowNs - start;
        });

        // The user uses edu once a second (it reads the identification register) and wakes
        // early when the REQ eventfd is signalled, until it has let go of the device.
        long deadline = start + GiveUpAfterNs;
        for (long tick = start + 1_000_000_000; ; tick += 1_000_000_000)
        {
            Span<PollFd> poll = [new PollFd(req, PollEvents.POLLIN)];
            user.Poll(poll, timeoutMs: (int)Math.Max(0, (Math.Min(tick, deadline) - clock.NowNs) / 1_000_000));
            signals += ReadCount(user, req);
            string at = Seconds(clock.NowNs - start);
            if (cooperative && signals > 0)
            {
                fdAfter = $"closed by the user when asked, at {at}";
                break;
            }

            if (Use(session.Device) is { } error)
            {
                fdAfter = $"revoked: {error}, seen at {at}";
                break;
            }

            if (clock.NowNs >= deadline)
            {
                fdAfter = $"closed by the user at {at}";
                break;
            }
        }

        session.Dispose();
        unbinder.Join();
        signals += ReadCount(user, req);
        user.Close(req);
    });

    List<string> dmesg = [.. sim.Kernel.Log.Messages.TakeLast((int)(sim.Kernel.Log.Total - logBefore)).Select(m => m.ToString())];

    // Without the wait the device is freed under the open fd: the user's next access must be
    // the use-after-free, and nothing else.
    bool asDesigned = policy == VfioUnbindPolicy.NoWait
        ? run.Outcome == RunOutcome.Panic && run.Exception?.Message.Contains("use-after-free", StringComparison.Ordinal) == true
        : run.Passed;
    if (policy == VfioUnbindPolicy.NoWait && asDesigned)
    {
        fdAfter = "freed under it: the next access is a KASAN use-after-free (kernel BUG)";
    }
    else if (!asDesigned)
    {
        dmesg.Add(run.Describe());
    }

    return new Row(policy, cooperative ? "releases when asked" : "ignores REQ, closes at 60 s", unbindNs, signals, fdAfter, dmesg, asDesigned);
}

// One use of the device: a read of edu's identification register; the error, or null.
static string? Use(VfioDeviceFd device)
{
    try
    {
        device.Read(VfioPciIndex.Bar0, 0, new byte[4]);
        return null;
    }
    catch (VfioException e)
    {
        return $"{e.Ioctl} fails with {e.Errno}";
    }
}

// Reads and resets the eventfd's count (0 when nothing was signalled since the last read).
static long ReadCount(SimProcess user, int eventfd)
{
    byte[] count = new byte[8];
    return user.Read(eventfd, count) == 8 ? BitConverter.ToInt64(count) : 0;
}

static string Seconds(long ns) => (ns / 1e9).ToString("0.0", CultureInfo.InvariantCulture) + " s";

internal sealed record Row(VfioUnbindPolicy Policy, string User, long UnbindNs, long Signals, string FdAfter, IReadOnlyList<string> Dmesg, bool Passed);
