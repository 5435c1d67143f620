"""wcsvod: an open server for Flashphoner-style VOD over WebRTC."""

from setuptools import Extension, find_packages, setup

setup(
    name="wcsvod",
    version="0.1.0",
    description="Plays MP4 files to browsers over WebRTC, speaking the Flashphoner WCS protocol",
    python_requires=">=3.11",
    packages=find_packages(include=["wcs", "wcs.*"]) + ["twisted.plugins"],
    package_data={"twisted": ["plugins/wcsvod_plugin.py"], "wcs": ["web/static/*"]},
    # the fast RTP sender's inner loop; optional: without a C compiler the
    # install goes on and wcs/webrtc/rtpstream.py's Python loop is used (and logged)
    ext_modules=[
        Extension(
            "wcs.webrtc._rtpout",
            ["wcs/webrtc/_rtpout.c"],
            extra_compile_args=["-Wall", "-Wextra", "-Werror"],
            libraries=["crypto"],  # OpenSSL's AES-GCM: SRTP protected here
            optional=True,
        )
    ],
    install_requires=[
        "twisted[tls]>=24.7,<27",
        "autobahn>=24.4,<27",
        "pyopenssl>=24.0,<27",
        "service-identity>=24.1,<27",
        "cryptography>=42",
        # 18.1.1's AudioResampler keeps its filter graph, and two threads of its own,
        # in a reference cycle until the collector runs (tests/test_audio.py)
        "av>=14,<18.1.1",
        "aiortc>=1.14,<1.17",
        # _rtpout.c calls its srtp_protect (libsrtp 2's signature, checked at start-up)
        "pylibsrtp>=1.0,<1.1",
        "treq>=24.9,<27",
        "botocore>=1.34,<2",
        "redis>=5,<9",
        "prometheus-client>=0.20,<1",
    ],
    # the file tools, as ``python -m wcs`` runs them
    entry_points={"console_scripts": ["wcsvod-files = wcs.__main__:main"]},
    extras_require={
        "test": [
            # 9.2 renamed what pytest-xdist 3.8's --dist loadgroup rewrites (an
            # item's _nodeid): the suite's load tests would no longer run together
            "pytest>=8,<9.2",
            "pytest-xdist>=3.5,<4",
            "playwright>=1.48,<2",
            "moto[server]>=5,<6",
            "jsonschema>=4.20,<5",
            "openapi-spec-validator>=0.7,<1",  # docs/openapi.json checked by the suite
            "py-spy>=0.3",
            # the checks scripts/test.sh runs before the suite (pinned: a new
            # release's new rules are taken on purpose, not by surprise)
            "ruff==0.17.6",
            "mypy==2.4.1",
            "mypy-zope==1.0.17",
        ],
    },
)
