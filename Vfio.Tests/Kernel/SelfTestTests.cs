using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;

namespace Vfio.Tests.Kernel;

public sealed class SelfTestTests
{
    [TestCaseSource(typeof(KernelProfile), nameof(KernelProfile.Presets))]
    public void EverySelfTestPasses(KernelProfile profile)
    {
        IReadOnlyList<SelfTestResult> results = SelfTest.RunAll(profile);

        Assert.That(results, Has.Count.EqualTo(7));
        foreach (SelfTestResult r in results)
        {
            Assert.That(r.Passed, Is.True, $"{r.Name}: {r.Detail}");
        }
    }

    [TestCaseSource(typeof(KernelProfile), nameof(KernelProfile.Presets))]
    public void EveryMachineSelfTestPasses(KernelProfile profile)
    {
        IReadOnlyList<SelfTestResult> results = PlatformSelfTest.RunAll(profile);

        Assert.That(results, Has.Count.EqualTo(6));
        foreach (SelfTestResult r in results)
        {
            Assert.That(r.Passed, Is.True, $"{r.Name}: {r.Detail}");
        }
    }
}
