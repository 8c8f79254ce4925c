// Tests Vfio.Kernel/KernelIdSpace.cs: every kernel numbers its objects from 1, whatever
// other kernels of the process did, and lockdep's graph is per kernel.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;

namespace Vfio.Tests.Kernel;

public sealed class KernelIdSpaceTests
{
    private static readonly KernelIdSpace s_things = new("test_thing");

    [Test]
    public void EveryKernel_NumbersASpaceFromOne()
    {
        var a = new SimKernel();
        var b = new SimKernel();
        Assert.That(new[] { a.NextId(s_things), a.NextId(s_things), b.NextId(s_things), a.NextId(s_things) }, Is.EqualTo(new long[] { 1, 2, 1, 3 }));
    }

    [Test]
    public void FilesAndEventFds_AreNumberedPerKernel_SoTheirNamesRepeatAcrossBoots()
    {
        string Names()
        {
            var m = new SimMachine();
            var p = m.CreateProcess("user");
            int a = p.Eventfd(0);
            int b = p.Eventfd(0);
            Vfio.Platform.Fs.SimFile fa = p.Files.Get(a)!, fb = p.Files.Get(b)!;
            string names = $"file {fa.Id} {fb.Id} eventfd {Vfio.Platform.Fs.EventFdContext.FromFile(fa)!.Id} {Vfio.Platform.Fs.EventFdContext.FromFile(fb)!.Id}";
            fa.Put();
            fb.Put();
            return names;
        }

        Assert.That(Names(), Is.EqualTo("file 1 2 eventfd 1 2"));
        Assert.That(Names(), Is.EqualTo("file 1 2 eventfd 1 2"));
    }
}
