using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

public sealed class ErrnoTests
{
    // Values from include/uapi/asm-generic/errno{,-base}.h and include/linux/errno.h.
    [TestCase(Errno.EPERM, 1)]
    [TestCase(Errno.ENOENT, 2)]
    [TestCase(Errno.EINTR, 4)]
    [TestCase(Errno.EIO, 5)]
    [TestCase(Errno.EBADF, 9)]
    [TestCase(Errno.EAGAIN, 11)]
    [TestCase(Errno.ENOMEM, 12)]
    [TestCase(Errno.EFAULT, 14)]
    [TestCase(Errno.EBUSY, 16)]
    [TestCase(Errno.EEXIST, 17)]
    [TestCase(Errno.ENODEV, 19)]
    [TestCase(Errno.EINVAL, 22)]
    [TestCase(Errno.ENOSPC, 28)]
    [TestCase(Errno.ENOTTY, 25)]
    [TestCase(Errno.ERANGE, 34)]
    [TestCase(Errno.EDEADLK, 35)]
    [TestCase(Errno.ENOSYS, 38)]
    [TestCase(Errno.EOVERFLOW, 75)]
    [TestCase(Errno.EBADFD, 77)]
    [TestCase(Errno.EOPNOTSUPP, 95)]
    [TestCase(Errno.ETIMEDOUT, 110)]
    [TestCase(Errno.EHWPOISON, 133)]
    [TestCase(Errno.ERESTARTSYS, 512)]
    [TestCase(Errno.ENOIOCTLCMD, 515)]
    [TestCase(Errno.EPROBE_DEFER, 517)]
    [TestCase(Errno.ENOTSUPP, 524)]
    public void NumbersAreLinuxs(Errno errno, int value) => Assert.That((int)errno, Is.EqualTo(value));

    [Test]
    public void NamesMessagesAndReturnValues()
    {
        Assert.That(Errno.EINVAL.Name(), Is.EqualTo("EINVAL"));
        Assert.That(Errno.EINVAL.Message(), Is.EqualTo("Invalid argument"));
        Assert.That(Errno.EBADFD.Describe(), Is.EqualTo("EBADFD (File descriptor in bad state)"));
        Assert.That(Errno.EINVAL.Negative(), Is.EqualTo(-22));
        Assert.That(ErrnoExtensions.FromReturn(-25), Is.EqualTo(Errno.ENOTTY));
        Assert.That(ErrnoExtensions.FromReturn(4096), Is.EqualTo(Errno.None));
        Assert.That(Errno.ERESTARTSYS.IsKernelInternal(), Is.True);
        Assert.That(Errno.EIO.IsKernelInternal(), Is.False);
        Assert.That(((Errno)58).Name(), Is.EqualTo("E?(58)"), "58 is unused on Linux");
        Assert.That(ErrnoExtensions.TryParse("EOVERFLOW", out Errno e) && e == Errno.EOVERFLOW, Is.True);
        Assert.That(ErrnoExtensions.TryParse("77", out Errno f) && f == Errno.EBADFD, Is.True);
        Assert.That(ErrnoExtensions.TryParse("EWHATEVER", out _), Is.False);
    }

    [Test]
    public void EveryDefinedNumberHasAMessage()
    {
        foreach (Errno e in Enum.GetValues<Errno>())
        {
            Assert.That(e.Message(), Does.Not.StartWith("Unknown error"), e.ToString());
        }
    }
}

public sealed class KernelProfileTests
{
    [Test]
    public void PresetsParseAndCompare()
    {
        Assert.That(KernelProfile.Parse("6.1"), Is.SameAs(KernelProfile.Linux6_1));
        Assert.That(KernelProfile.Parse("linux-6.12"), Is.SameAs(KernelProfile.Linux6_12));
        Assert.That(KernelProfile.Linux6_12.Release, Is.EqualTo("6.12.0-vfio-sim"));
        Assert.That(KernelProfile.Linux6_12.Version, Is.GreaterThan(new KernelVersion(6, 5)));
        Assert.That(KernelProfile.Linux6_1.Version, Is.LessThan(new KernelVersion(6, 5)));
        Assert.That(() => KernelProfile.Parse("5.4"), Throws.ArgumentException.With.Message.Contains("linux-6.12, linux-6.1"));
    }
}

public sealed class KRandomTests
{
    [Test]
    public void StreamsAreReproducible_AndIndependent()
    {
        var a = new KRandom(5, stream: 1);
        var b = new KRandom(5, stream: 1);
        var c = new KRandom(5, stream: 2);
        ulong[] xs = [.. Enumerable.Range(0, 8).Select(_ => a.NextU64())];
        Assert.That(Enumerable.Range(0, 8).Select(_ => b.NextU64()), Is.EqualTo(xs));
        Assert.That(Enumerable.Range(0, 8).Select(_ => c.NextU64()), Is.Not.EqualTo(xs));
    }

    [Test]
    public void Next_StaysInRange_AndCoversIt()
    {
        var r = new KRandom(99);
        int[] counts = new int[7];
        for (int i = 0; i < 7000; i++)
        {
            counts[r.Next(7)]++;
        }

        Assert.That(counts, Is.All.InRange(800, 1200));
        Assert.That(() => r.Next(0), Throws.TypeOf<ArgumentOutOfRangeException>());
    }
}
